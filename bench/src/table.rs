//! Plain-text tables with aligned columns, for terminal output.

/// Column alignment: text to the left, figures to the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns as `(title, alignment)`.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            header: columns.iter().map(|(t, _)| (*t).to_owned()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing trailing cells print empty.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        assert!(
            cells.len() <= self.header.len(),
            "row has {} cells, table {} columns",
            cells.len(),
            self.header.len()
        );
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// A rule across the whole table between groups of rows.
    pub fn separator(&mut self) {
        self.rows.push(Vec::new());
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let line = |cells: &[String]| -> String {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(&self.align)
                .map(|((c, w), a)| {
                    let pad = " ".repeat(w - width(c));
                    match a {
                        Align::Left => format!("{c}{pad}"),
                        Align::Right => format!("{pad}{c}"),
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_owned()
        };
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        let rule = "-".repeat(total);
        let mut out = vec![line(&self.header), rule.clone()];
        for row in &self.rows {
            out.push(if row.is_empty() {
                rule.clone()
            } else {
                line(row)
            });
        }
        out.join("\n") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_widest_cell() {
        let mut t = Table::new(&[("name", Align::Left), ("ms", Align::Right)]);
        t.row(["bridge", "1.5"]);
        t.separator();
        t.row(["x", "12.25"]);
        assert_eq!(
            t.render(),
            "name       ms\n-------------\nbridge    1.5\n-------------\nx       12.25\n"
        );
    }

    #[test]
    fn short_rows_are_padded() {
        let mut t = Table::new(&[("a", Align::Left), ("b", Align::Left)]);
        t.row(["only"]);
        assert_eq!(t.render(), "a     b\n-------\nonly\n");
    }
}
