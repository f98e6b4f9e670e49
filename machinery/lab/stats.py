"""The experiments' statistics: Student's t distribution (no scipy), Welch's and the paired t-test, each
with its two-sided p-value and the 95% confidence interval of the difference.

    test = stats.compare([6.70, 6.71, 6.69], [6.76, 6.73, 6.79], paired=True)
    test["difference"], test["low"], test["high"], test["p"], test["test"]

The difference is always second minus first (the worse arm minus the better one in experiments.py, so
that > 0 is the claim's direction).
"""
import math
import statistics


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz),
    used on the side where it converges fast."""
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
    `paired_runs` (the same seeds, in the same order), else Welch's. Needs at least 2 values per side."""
    if len(first) < 2 or len(second) < 2:
        raise ValueError("a t-test needs at least 2 runs per arm")
    if paired_runs and len(first) != len(second):
        raise ValueError("a paired test needs the same runs in both arms")
    d, se, df = (paired if paired_runs else welch)(first, second)
    if se == 0:  # every run identical: no spread to test against
        p = 1.0 if d == 0 else 0.0
    else:
        p = t_two_sided_p(d / se, df)
    half = t_quantile(df, 1 - level) * se
    return {"test": "paired t-test" if paired_runs else "Welch's t-test", "difference": d, "se": se, "df": df,
            "low": d - half, "high": d + half, "p": p, "resolves": half}
