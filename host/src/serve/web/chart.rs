//! Small SVG line charts: axes with round ticks, one polyline per series,
//! a point per value (with its value as a tooltip), vertical markers, and
//! a legend. The numbers are also in the page's tables, for screen readers
//! and for copying.

use std::fmt::Write as _;

use super::html::esc;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend.
    pub name: String,
    /// Its CSS class (`canary`, `stable`).
    pub class: &'static str,
    /// (x, y) in order of x.
    pub points: Vec<(f64, f64)>,
    /// Drawn as steps (the value holds until the next point).
    pub steps: bool,
}

/// A chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Its title, also its accessible name.
    pub title: String,
    /// What x is.
    pub x_label: String,
    /// What y is.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical markers: (x, label).
    pub markers: Vec<(f64, String)>,
    /// y runs from 0 to at least this.
    pub y_floor_max: f64,
    /// Formats a y value.
    pub y_unit: &'static str,
}

const W: f64 = 560.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// A round step for about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The chart as an `<svg>` inside a `<figure>`.
pub fn svg(c: &Chart) -> String {
    let xs = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(c.markers.iter().map(|m| m.0));
    let (mut x_min, mut x_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in xs {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
    }
    if !x_min.is_finite() {
        (x_min, x_max) = (0.0, 1.0);
    }
    if (x_max - x_min).abs() < f64::EPSILON {
        x_max = x_min + 1.0;
    }
    let y_data = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_step = tick_step(y_data.max(c.y_floor_max));
    let y_max = (y_data.max(c.y_floor_max) / y_step).ceil().max(1.0) * y_step;
    let px = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * (W - LEFT - RIGHT);
    let py = |y: f64| TOP + (1.0 - y / y_max) * (H - TOP - BOTTOM);

    let mut out = format!(
        "<figure class=\"chart\"><figcaption>{title}</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{title}\">",
        title = esc(&c.title)
    );
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= y_max + y_step / 2.0 {
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            py(y) + 4.0,
            fmt(y),
            c.y_unit,
            py = py(y)
        );
        y += y_step;
    }
    // x ticks.
    let x_step = tick_step(x_max - x_min);
    let mut x = (x_min / x_step).ceil() * x_step;
    while x <= x_max + x_step * 1e-9 {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(x),
            H - BOTTOM + 16.0,
            fmt(x)
        );
        x += x_step;
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{r}\" y1=\"{b}\" y2=\"{b}\"/>\
         <text class=\"label\" x=\"{cx}\" y=\"{ly}\" text-anchor=\"middle\">{xl}</text>\
         <text class=\"label\" x=\"12\" y=\"{cy}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {cy})\">{yl}</text>",
        b = H - BOTTOM,
        r = W - RIGHT,
        cx = (LEFT + W - RIGHT) / 2.0,
        ly = H - 6.0,
        cy = (TOP + H - BOTTOM) / 2.0,
        xl = esc(&c.x_label),
        yl = esc(&c.y_label),
    );
    for (x, label) in &c.markers {
        let _ = write!(
            out,
            "<line class=\"marker\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{b}\"/><text class=\"marker-label\" x=\"{tx:.1}\" y=\"{ty}\">{l}</text>",
            x = px(*x),
            tx = px(*x) + 4.0,
            ty = TOP + 12.0,
            b = H - BOTTOM,
            l = esc(label)
        );
    }
    for s in &c.series {
        let mut d = String::new();
        let mut last: Option<(f64, f64)> = None;
        for &(x, y) in &s.points {
            match last {
                None => {
                    let _ = write!(d, "M{:.1},{:.1}", px(x), py(y));
                }
                Some((_, ly)) if s.steps => {
                    let _ = write!(d, " L{:.1},{:.1} L{:.1},{:.1}", px(x), py(ly), px(x), py(y));
                }
                Some(_) => {
                    let _ = write!(d, " L{:.1},{:.1}", px(x), py(y));
                }
            }
            last = Some((x, y));
        }
        let _ = write!(out, "<path class=\"line {}\" d=\"{d}\"/>", s.class);
        for (i, &(x, y)) in s.points.iter().enumerate() {
            let _ = write!(
                out,
                "<circle class=\"pt {cls}\" data-step=\"{n}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\"><title>{name}: {}{unit} at {}</title></circle>",
                px(x),
                py(y),
                fmt(y),
                fmt(x),
                cls = s.class,
                n = i + 1,
                name = esc(&s.name),
                unit = c.y_unit,
            );
        }
    }
    out.push_str("</svg><ul class=\"legend\">");
    for s in &c.series {
        let _ = write!(
            out,
            "<li><span class=\"key {}\"></span>{}</li>",
            s.class,
            esc(&s.name)
        );
    }
    out.push_str("</ul></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(7.0), 2.0);
        assert_eq!(tick_step(0.3), 0.1);
    }

    #[test]
    fn every_point_is_drawn_and_named() {
        let c = Chart {
            title: "Error rate".into(),
            x_label: "analysis step".into(),
            y_label: "%".into(),
            series: vec![Series {
                name: "canary <v2>".into(),
                class: "canary",
                points: vec![(1.0, 0.0), (2.0, 1.5), (3.0, 0.2)],
                steps: false,
            }],
            markers: vec![(2.5, "rolled back".into())],
            y_floor_max: 1.0,
            y_unit: "%",
        };
        let s = svg(&c);
        assert_eq!(s.matches("<circle class=\"pt canary\"").count(), 3);
        assert!(s.contains("canary &lt;v2&gt;") && s.contains("rolled back"));
    }

    #[test]
    fn one_point_or_none_still_draws() {
        let mut c = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![],
            markers: vec![],
            y_floor_max: 0.0,
            y_unit: "",
        };
        assert!(svg(&c).contains("</svg>"));
        c.series.push(Series {
            name: "a".into(),
            class: "canary",
            points: vec![(3.0, 3.0)],
            steps: true,
        });
        assert!(svg(&c).contains("<circle"));
    }
}
