"""The paper's scale: numpy twins of the core's plain loops (tested equal), and data folders written and read."""
