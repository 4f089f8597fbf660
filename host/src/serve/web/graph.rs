//! A run's stages as an SVG graph: columns by depth in the `needs` graph
//! (a stage sits one column right of the deepest stage it needs), rows in
//! the file's order, edges from each need to its stage.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::html::esc;

/// One stage as the graph shows it.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// The stage.
    pub name: String,
    /// `pending`, `running`, `waiting`, `succeeded`, `failed`, `skipped`,
    /// `cancelled`.
    pub state: String,
    /// Wall time, once finished.
    pub duration_ms: Option<i64>,
    /// Served from the stage cache.
    pub cached: bool,
    /// Attempts after the first.
    pub retries: u32,
    /// The stages it needs.
    pub needs: Vec<String>,
}

const W: i64 = 200;
const H: i64 = 58;
const GAP_X: i64 = 48;
const GAP_Y: i64 = 14;
const PAD: i64 = 8;

/// Each node's (column, row).
fn layout(nodes: &[Node]) -> Vec<(i64, i64)> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut depth: Vec<Option<i64>> = vec![None; nodes.len()];
    // Needs point backwards in a valid plan, but a cycle or an unknown
    // name must not hang or crash the page: depth is bounded by the count.
    fn depth_of(
        i: usize,
        nodes: &[Node],
        index: &HashMap<&str, usize>,
        depth: &mut Vec<Option<i64>>,
        guard: usize,
    ) -> i64 {
        if let Some(d) = depth[i] {
            return d;
        }
        if guard > nodes.len() {
            return 0;
        }
        let d = nodes[i]
            .needs
            .iter()
            .filter_map(|n| index.get(n.as_str()))
            .map(|&j| depth_of(j, nodes, index, depth, guard + 1) + 1)
            .max()
            .unwrap_or(0);
        depth[i] = Some(d);
        d
    }
    let mut rows: HashMap<i64, i64> = HashMap::new();
    (0..nodes.len())
        .map(|i| {
            let col = depth_of(i, nodes, &index, &mut depth, 0);
            let row = rows.entry(col).or_insert(0);
            let at = (col, *row);
            *row += 1;
            at
        })
        .collect()
}

/// The graph as an `<svg>`: each node a link to its log.
pub fn svg(nodes: &[Node]) -> String {
    let at = layout(nodes);
    let cols = at.iter().map(|a| a.0).max().map_or(0, |c| c + 1);
    let rows = at.iter().map(|a| a.1).max().map_or(0, |r| r + 1);
    let width = PAD * 2 + cols * W + (cols - 1).max(0) * GAP_X;
    let height = PAD * 2 + rows * H + (rows - 1).max(0) * GAP_Y;
    let pos = |i: usize| (PAD + at[i].0 * (W + GAP_X), PAD + at[i].1 * (H + GAP_Y));
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut out = format!(
        "<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"group\" aria-label=\"Stage graph: {} stages\">",
        nodes.len()
    );
    for (i, n) in nodes.iter().enumerate() {
        for need in &n.needs {
            let Some(&j) = index.get(need.as_str()) else {
                continue;
            };
            let ((x1, y1), (x2, y2)) = (pos(j), pos(i));
            let (x1, y1, x2, y2) = (x1 + W, y1 + H / 2, x2, y2 + H / 2);
            let mid = (x1 + x2) / 2;
            let _ = write!(
                out,
                "<path class=\"edge\" d=\"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}\"/>"
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let mut facts = Vec::new();
        facts.push(n.state.clone());
        if let Some(d) = n.duration_ms {
            facts.push(super::html::duration(d));
        }
        if n.cached {
            facts.push("cache hit".into());
        }
        if n.retries > 0 {
            facts.push(format!(
                "{} retr{}",
                n.retries,
                if n.retries == 1 { "y" } else { "ies" }
            ));
        }
        let label = format!("{}: {}", n.name, facts.join(", "));
        let _ = write!(
            out,
            "<a class=\"node s-{state}\" href=\"#stage-{id}\" data-stage=\"{name}\" aria-label=\"{label}\">\
             <title>{label}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\"/>\
             <text x=\"{tx}\" y=\"{ty1}\" class=\"name\">{short}</text>\
             <text x=\"{tx}\" y=\"{ty2}\" class=\"facts\">{facts}</text></a>",
            state = esc(&n.state),
            id = esc(&n.name),
            name = esc(&n.name),
            label = esc(&label),
            tx = x + 10,
            ty1 = y + 23,
            ty2 = y + 44,
            short = esc(&shorten(&n.name, 20)),
            facts = esc(&facts.join(" · ")),
        );
    }
    out.push_str("</svg>");
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, needs: &[&str]) -> Node {
        Node {
            name: name.into(),
            state: "succeeded".into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            ..Node::default()
        }
    }

    #[test]
    fn a_stage_sits_right_of_the_deepest_stage_it_needs() {
        let nodes = [
            node("checkout", &[]),
            node("build", &["checkout"]),
            node("test", &["checkout"]),
            node("deploy", &["build", "test"]),
        ];
        assert_eq!(layout(&nodes), vec![(0, 0), (1, 0), (1, 1), (2, 0)]);
        let svg = svg(&nodes);
        assert_eq!(svg.matches("class=\"node ").count(), 4);
        assert_eq!(svg.matches("class=\"edge\"").count(), 4);
    }

    #[test]
    fn a_cycle_or_an_unknown_need_still_draws() {
        let nodes = [node("a", &["b"]), node("b", &["a"]), node("c", &["nope"])];
        let svg = svg(&nodes);
        assert_eq!(svg.matches("class=\"node ").count(), 3);
    }

    #[test]
    fn names_are_escaped() {
        let svg = svg(&[node("<x>", &[])]);
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"), "{svg}");
    }
}
