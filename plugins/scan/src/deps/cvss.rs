//! CVSS base scores from vector strings (v3.0, v3.1 and v4.0, scored by
//! the RustSec `cvss` crate), and the severity a score means.

/// The base score of a `CVSS:3.x/...` or `CVSS:4.0/...` vector, or `None`
/// when it is not a complete vector.
pub fn base_score(vector: &str) -> Option<f64> {
    let parsed: cvss::Cvss = vector.trim().parse().ok()?;
    // The crate scores a vector with base metrics left out as if they
    // were the mildest; an advisory's vector has them all, so one that
    // does not is not scored.
    let base_metrics = match parsed {
        cvss::Cvss::CvssV40(_) => 11,
        _ => 8,
    };
    (parsed.metrics().count() >= base_metrics).then(|| parsed.score())
}

/// The qualitative rating of a score: `critical` from 9.0, `high` from
/// 7.0, `medium` from 4.0, `low` above 0, `none` at 0.
pub fn rating(score: f64) -> &'static str {
    if score >= 9.0 {
        "critical"
    } else if score >= 7.0 {
        "high"
    } else if score >= 4.0 {
        "medium"
    } else if score > 0.0 {
        "low"
    } else {
        "none"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_scores() {
        // NVD's scores for these vectors.
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
            Some(7.5)
        );
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(6.1)
        );
        assert_eq!(
            base_score("CVSS:3.0/AV:L/AC:H/PR:L/UI:N/S:U/C:N/I:N/A:L"),
            Some(2.5)
        );
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some(10.0)
        );
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"),
            Some(0.0)
        );
        // FIRST's calculator.
        assert_eq!(
            base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            Some(9.3)
        );
        assert_eq!(base_score("CVSS:3.1/AV:N/AC:L"), None);
        assert_eq!(base_score("not a vector"), None);
        assert_eq!(rating(9.8), "critical");
        assert_eq!(rating(6.1), "medium");
    }
}
