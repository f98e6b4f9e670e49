"""The experiments' statistics, without scipy: Student's t distribution, Welch's and the paired t-test (two-sided
p and the interval of the difference, second minus first), the equivalence test (TOST) and Holm's correction.

    test = stats.compare([6.70, 6.71, 6.69], [6.76, 6.73, 6.79], paired_runs=True)
    stats.holm([0.01, 0.04, 0.03]), stats.tost(test, 0.01)
"""
import math
import statistics

ZERO_SPREAD = 1e-9              # a standard error below this share of the values' size is rounding, not spread


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b): its continued fraction (modified Lentz), fast side."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_two_sided_p(t, df):
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom (df may be fractional: Welch)."""
    return betainc(df / 2, 0.5, df / (df + t * t))


def t_one_sided_p(t, df):
    """P(T >= t) for Student's t with `df` degrees of freedom."""
    half = t_two_sided_p(t, df) / 2
    return half if t >= 0 else 1.0 - half


def t_quantile(df, p_two_sided=0.05):
    """The t with P(|T| >= t) = p_two_sided: 2.776 for df 4 at 5%. Bisection on t_two_sided_p."""
    low, high = 0.0, 1e6
    for _ in range(200):
        mid = (low + high) / 2
        if t_two_sided_p(mid, df) > p_two_sided:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def welch(first, second):
    """Welch's t-test of mean(second) - mean(first), the arms' runs taken as independent samples."""
    v1, v2 = statistics.variance(first) / len(first), statistics.variance(second) / len(second)
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (len(first) - 1) + v2 ** 2 / (len(second) - 1)) if se > 0 else \
        len(first) + len(second) - 2
    return statistics.fmean(second) - statistics.fmean(first), se, df


def paired(first, second):
    """The paired t-test of the mean of (second[k] - first[k]): runs k of the two arms share seed k."""
    diffs = [b - a for a, b in zip(first, second)]
    return statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs)), len(diffs) - 1


def compare(first, second, paired_runs=False, level=0.95):
    """mean(second) - mean(first), its `level` confidence interval and two-sided p: the paired test when
    `paired_runs` (the same seeds, in order), else Welch's. Zero spread (se 0 up to rounding): no p, no interval."""
    if len(first) < 2 or len(second) < 2:
        raise ValueError("a t-test needs at least 2 runs per arm")
    if paired_runs and len(first) != len(second):
        raise ValueError("a paired test needs the same runs in both arms")
    d, se, df = (paired if paired_runs else welch)(first, second)
    test = {"test": "paired t-test" if paired_runs else "Welch's t-test", "difference": d, "se": se, "df": df}
    if se <= ZERO_SPREAD * max(1.0, *(abs(x) for x in first + second)):  # e.g. 4.1 - 4.0 == 4.11 - 4.01
        return {**test, "se": 0.0, "p": None, "zero_spread": True}
    return interval({**test, "p": t_two_sided_p(d / se, df), "zero_spread": False}, level)


def interval(test, level):
    """The test with its `level` confidence interval (low, high) and half-width ("resolves")."""
    half = t_quantile(test["df"], 1 - level) * test["se"]
    return {**test, "level": level, "low": test["difference"] - half, "high": test["difference"] + half,
            "resolves": half}


def tost(test, margin):
    """Two one-sided t-tests (TOST) of "the true difference lies within +-margin": the larger one-sided p, of
    "<= -margin" and of ">= +margin"; below a/2 exactly when the two-sided 1 - a interval lies inside +-margin."""
    d, se, df = test["difference"], test["se"], test["df"]
    return max(t_one_sided_p((d + margin) / se, df), t_one_sided_p((margin - d) / se, df))


def holm(pvalues, alpha=0.05):
    """Holm's step-down correction of m tests at familywise level `alpha` (docs/experiments/README.md). For each
    test, in the order given: {"adjusted": its Holm-adjusted p (rejected exactly when < alpha), "level": the level
    it was held to (alpha / (m - k + 1) at rank k; past the first failure, that failure's), "rank"}."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running, failed_at = [None] * m, 0.0, None
    for k, i in enumerate(order, 1):
        running = max(running, min(1.0, (m - k + 1) * pvalues[i]))
        if failed_at is None and pvalues[i] >= alpha / (m - k + 1):
            failed_at = k
        out[i] = {"adjusted": running, "level": alpha / (m - min(k, failed_at or k) + 1), "rank": k}
    return out
