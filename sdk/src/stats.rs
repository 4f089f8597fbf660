//! Statistics for judges: the Mann-Whitney U test, to ask whether a
//! canary's latencies (or any measurements) are larger than a baseline's
//! without assuming a distribution. Kayenta's judge uses the same test.
//!
//! ```
//! use weir_sdk::stats::{mann_whitney_u, Alternative};
//! let baseline = [10.0, 11.0, 12.0, 10.5, 11.5, 12.5, 10.2, 11.2];
//! let canary = [15.0, 16.0, 14.5, 15.5, 16.5, 14.0, 15.2, 16.2];
//! let t = mann_whitney_u(&canary, &baseline, Alternative::Greater).unwrap();
//! assert!(t.p_value < 0.001); // the canary is slower
//! ```
//!
//! The results follow `scipy.stats.mannwhitneyu` (method `auto`): the
//! exact distribution when both samples are smaller than 8 and there are
//! no ties, otherwise the normal approximation with the tie correction and
//! a continuity correction.

/// Which difference the test looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// `x` and `y` differ either way.
    TwoSided,
    /// `x` tends to be larger than `y` (a canary slower than its baseline).
    Greater,
    /// `x` tends to be smaller than `y`.
    Less,
}

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// The U statistic of `x`: how many (x, y) pairs have x > y, ties
    /// counting one half.
    pub u: f64,
    /// The probability of a U at least this extreme if `x` and `y` come
    /// from the same distribution.
    pub p_value: f64,
    /// The standardized statistic, when the normal approximation was used.
    pub z: Option<f64>,
    /// Whether the exact distribution was used.
    pub exact: bool,
}

/// Test whether `x` and `y` come from the same distribution, against
/// `alternative`. `None` when either sample is empty or holds a NaN.
pub fn mann_whitney_u(x: &[f64], y: &[f64], alternative: Alternative) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    // Midranks of the pooled sample.
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = n1 + n2;
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        let midrank = (i + j + 1) as f64 / 2.0;
        rank_sum_x += midrank * pooled[i..j].iter().filter(|p| p.1).count() as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = rank_sum_x - f1 * (f1 + 1.0) / 2.0;
    let u2 = f1 * f2 - u1;

    if n1 < 8 && n2 < 8 && tie_term == 0.0 {
        // P(U >= u) and P(U <= u) from the exact null distribution.
        let counts = u_distribution(n1, n2);
        let total: f64 = counts.iter().sum();
        let at = u1.round() as usize;
        let upper: f64 = counts[at..].iter().sum::<f64>() / total;
        let lower: f64 = counts[..=at].iter().sum::<f64>() / total;
        let p = match alternative {
            Alternative::Greater => upper,
            Alternative::Less => lower,
            Alternative::TwoSided => (2.0 * upper.min(lower)).min(1.0),
        };
        return Some(MannWhitney {
            u: u1,
            p_value: p,
            z: None,
            exact: true,
        });
    }

    let mu = f1 * f2 / 2.0;
    let nf = n as f64;
    let sigma = (f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    if sigma == 0.0 {
        // Every value equal: no evidence either way.
        return Some(MannWhitney {
            u: u1,
            p_value: 1.0,
            z: Some(0.0),
            exact: false,
        });
    }
    let (z, p) = match alternative {
        Alternative::Greater => {
            let z = (u1 - mu - 0.5) / sigma;
            (z, normal_sf(z))
        }
        Alternative::Less => {
            let z = (u1 - mu + 0.5) / sigma;
            (z, 1.0 - normal_sf(z))
        }
        Alternative::TwoSided => {
            let z = (u1.max(u2) - mu - 0.5) / sigma;
            (z, (2.0 * normal_sf(z)).min(1.0))
        }
    };
    Some(MannWhitney {
        u: u1,
        p_value: p.clamp(0.0, 1.0),
        z: Some(z),
        exact: false,
    })
}

/// How many arrangements of `n1` and `n2` distinct values give each U,
/// for U = 0 ..= n1·n2.
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    // f[i][j][u]: arrangements of i x's and j y's with U = u.
    let max = n1 * n2;
    let mut f = vec![vec![vec![0.0f64; max + 1]; n2 + 1]; n1 + 1];
    for (i, row) in f.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            if i == 0 || j == 0 {
                cell[0] = 1.0;
            }
        }
    }
    for i in 1..=n1 {
        for j in 1..=n2 {
            for u in 0..=i * j {
                // The largest value is an x (it beats all j y's) or a y.
                let with_x = if u >= j { f[i - 1][j][u - j] } else { 0.0 };
                let with_y = f[i][j - 1][u];
                f[i][j][u] = with_x + with_y;
            }
        }
    }
    f[n1][n2].clone()
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function ([libm]'s, accurate to about one
/// unit in the last place, where `1 - erf(x)` would lose every digit in
/// the tail).
pub fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 + 1e-6 * b.abs()
    }

    #[test]
    fn erfc_matches_scipy() {
        // scipy.special.erfc
        for (x, want) in [
            (0.0, 1.0),
            (0.1, 0.887_537_083_981_715_2),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_16),
            (2.0, 0.004_677_734_981_047_266),
            (2.4, 0.000_688_513_896_645_078_9),
            (2.6, 0.000_236_034_416_529_349),
            (3.0, 2.209_049_699_858_544_5e-5),
            (5.0, 1.537_459_794_428_034_7e-12),
            (10.0, 2.088_487_583_762_544_6e-45),
            (-1.0, 1.842_700_792_949_714_8),
        ] {
            let got = erfc(x);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "erfc({x}) = {got}, not {want}"
            );
        }
    }

    /// Reference values from scipy.stats.mannwhitneyu(x, y, alternative,
    /// method="auto") (scipy 1.x).
    #[test]
    fn mann_whitney_matches_scipy() {
        let large_x: Vec<f64> = (0..40).map(|i| 10.0 + f64::from(i * 37 % 17) / 3.0).collect();
        let large_y: Vec<f64> = (0..30).map(|i| 11.0 + f64::from(i * 29 % 13) / 2.5).collect();
        /// x, y, the p-value per alternative, U.
        type Case = (Vec<f64>, Vec<f64>, [(Alternative, f64); 3], f64);
        let cases: Vec<Case> = vec![
            (
                vec![1.0, 2.0, 3.0, 4.0, 5.0],
                vec![6.0, 7.0, 8.0, 9.0, 10.0],
                [
                    (Alternative::TwoSided, 0.007_936_507_936_507_936),
                    (Alternative::Greater, 1.0),
                    (Alternative::Less, 0.003_968_253_968_253_968),
                ],
                0.0,
            ),
            (
                vec![3.1, 1.2, 5.5, 4.4],
                vec![2.2, 6.1, 7.3, 0.5, 8.8],
                [
                    (Alternative::TwoSided, 0.555_555_555_555_555_6),
                    (Alternative::Greater, 0.793_650_793_650_793_6),
                    (Alternative::Less, 0.277_777_777_777_777_8),
                ],
                7.0,
            ),
            (
                vec![1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                vec![2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0, 8.0, 9.0],
                [
                    (Alternative::TwoSided, 0.093_297_375_011_413_08),
                    (Alternative::Greater, 0.960_330_909_373_964_3),
                    (Alternative::Less, 0.046_648_687_505_706_54),
                ],
                27.5,
            ),
            (
                large_x,
                large_y,
                [
                    (Alternative::TwoSided, 0.098_673_750_970_200_79),
                    (Alternative::Greater, 0.951_863_549_070_654_7),
                    (Alternative::Less, 0.049_336_875_485_100_39),
                ],
                460.5,
            ),
            (
                vec![5.0; 9],
                vec![5.0; 9],
                [
                    (Alternative::TwoSided, 1.0),
                    (Alternative::Greater, 1.0),
                    (Alternative::Less, 1.0),
                ],
                40.5,
            ),
        ];
        for (x, y, expected, u) in cases {
            for (alternative, p) in expected {
                let t = mann_whitney_u(&x, &y, alternative).unwrap();
                assert_eq!(t.u, u, "{x:?} {y:?}");
                assert!(
                    close(t.p_value, p),
                    "{alternative:?} {x:?} {y:?}: p {} not {p}",
                    t.p_value
                );
            }
        }
        assert!(mann_whitney_u(&[], &[1.0], Alternative::Greater).is_none());
        assert!(mann_whitney_u(&[f64::NAN], &[1.0], Alternative::Greater).is_none());
    }
}
