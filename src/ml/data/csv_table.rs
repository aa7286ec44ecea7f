//! [`Table`]: a CSV file as typed columns (the `csv` crate parses). A column is numeric when
//! every present value parses as a number, else categorical, unless [`CsvOptions::types`]
//! says which; missing values (empty, `NA`, `NaN`, `?` by default) are NaN in a numeric column
//! and `None` in a categorical one. A value that does not fit its forced type is an error
//! naming the line and the column.

use std::collections::HashMap;
use std::io::Read;

use crate::ml::error::{MlError, Result, invalid};
use crate::ml::tensor::Tensor;

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// Numbers (`f64`; missing = NaN).
    Numeric,
    /// Strings (missing = `None`).
    Categorical,
}

/// One column of a [`Table`].
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Numbers, NaN where missing.
    Numeric(Vec<f64>),
    /// Strings, `None` where missing.
    Categorical(Vec<Option<String>>),
}

/// How to read a CSV file.
#[derive(Clone, Debug)]
pub struct CsvOptions {
    /// The first record names the columns (else they are `c0`, `c1`, …).
    pub has_header: bool,
    /// Field separator.
    pub delimiter: u8,
    /// Values that mean "missing" (compared after trimming spaces).
    pub missing: Vec<String>,
    /// Forced types by column name; other columns are inferred.
    pub types: HashMap<String, ColType>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            has_header: true,
            delimiter: b',',
            missing: ["", "NA", "NaN", "nan", "?"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            types: HashMap::new(),
        }
    }
}

/// Named, typed columns of equal length.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Column names, in file order.
    pub names: Vec<String>,
    /// The columns.
    pub columns: Vec<Column>,
    /// Number of rows.
    pub rows: usize,
}

fn csv_err(line: u64, column: &str, detail: impl Into<String>) -> MlError {
    MlError::Csv {
        line,
        column: column.to_string(),
        detail: detail.into(),
    }
}

impl Table {
    /// Reads a whole CSV file.
    ///
    /// # Errors
    /// I/O or CSV syntax errors and records of the wrong length (with their line), values that
    /// do not fit a forced numeric column (line and column named).
    pub fn from_path(path: &std::path::Path, opts: &CsvOptions) -> Result<Self> {
        let f = std::fs::File::open(path)
            .map_err(|e| invalid("CSV file", format!("{}: {e}", path.display())))?;
        Self::from_reader(f, opts)
    }

    /// Reads CSV text from `r`.
    ///
    /// # Errors
    /// As [`from_path`](Self::from_path).
    pub fn from_reader(r: impl Read, opts: &CsvOptions) -> Result<Self> {
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(opts.has_header)
            .delimiter(opts.delimiter)
            .from_reader(r);
        let mut names: Vec<String> = if opts.has_header {
            rd.headers()
                .map_err(|e| csv_err(1, "", e.to_string()))?
                .iter()
                .map(|s| s.trim().to_string())
                .collect()
        } else {
            Vec::new()
        };
        let mut raw: Vec<Vec<(u64, Option<String>)>> = vec![Vec::new(); names.len()];
        for rec in rd.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                csv_err(line, "", e.to_string())
            })?;
            let line = rec.position().map_or(0, |p| p.line());
            if names.is_empty() && raw.is_empty() {
                names = (0..rec.len()).map(|i| format!("c{i}")).collect();
                raw = vec![Vec::new(); rec.len()];
            }
            if rec.len() != names.len() {
                return Err(csv_err(
                    line,
                    "",
                    format!("{} fields, the header has {}", rec.len(), names.len()),
                ));
            }
            for (j, v) in rec.iter().enumerate() {
                let t = v.trim();
                let missing = opts.missing.iter().any(|m| m == t);
                raw[j].push((line, (!missing).then(|| t.to_string())));
            }
        }
        let rows = raw.first().map_or(0, |c| c.len());
        let mut columns = Vec::with_capacity(names.len());
        for (name, vals) in names.iter().zip(raw) {
            let forced = opts.types.get(name).copied();
            let numeric = match forced {
                Some(t) => t == ColType::Numeric,
                None => vals
                    .iter()
                    .all(|(_, v)| v.as_deref().is_none_or(|s| s.parse::<f64>().is_ok())),
            };
            columns.push(if numeric {
                let mut out = Vec::with_capacity(vals.len());
                for (line, v) in vals {
                    out.push(match v {
                        None => f64::NAN,
                        Some(s) => s
                            .parse::<f64>()
                            .map_err(|_| csv_err(line, name, format!("{s:?} is not a number")))?,
                    });
                }
                Column::Numeric(out)
            } else {
                Column::Categorical(vals.into_iter().map(|(_, v)| v).collect())
            });
        }
        Ok(Table {
            names,
            columns,
            rows,
        })
    }

    /// The column called `name`.
    ///
    /// # Errors
    /// When there is none.
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
            .ok_or_else(|| invalid("column", format!("no column named {name:?}")))
    }

    /// The named numeric columns as a `rows x names.len()` matrix.
    ///
    /// # Errors
    /// A missing or categorical column.
    pub fn numeric(&self, names: &[&str]) -> Result<Tensor<f64>> {
        let cols = names
            .iter()
            .map(|n| match self.column(n)? {
                Column::Numeric(v) => Ok(v),
                Column::Categorical(_) => Err(invalid(
                    "column",
                    format!("{n:?} is categorical, not numeric"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(self.rows * cols.len());
        for i in 0..self.rows {
            out.extend(cols.iter().map(|c| c[i]));
        }
        Tensor::new(&[self.rows, cols.len()], out)
    }

    /// A numeric column of non-negative whole numbers as class indices.
    ///
    /// # Errors
    /// A missing, negative or fractional value (its row named).
    pub fn labels(&self, name: &str) -> Result<Vec<usize>> {
        match self.column(name)? {
            Column::Numeric(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    if x >= 0.0 && x.fract() == 0.0 {
                        Ok(x as usize)
                    } else {
                        Err(invalid(
                            "label",
                            format!("row {i} of {name:?} is {x}, not a class index"),
                        ))
                    }
                })
                .collect(),
            Column::Categorical(_) => Err(invalid(
                "label",
                format!("{name:?} is categorical: encode it with LabelEncoder"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_missing_values_and_errors_with_line_and_column() {
        let text = "age, city ,score\n31,Oslo,1.5\nNA,Bergen,\n27,,3e2\n";
        let t = Table::from_reader(text.as_bytes(), &CsvOptions::default()).unwrap();
        assert_eq!(t.names, ["age", "city", "score"]);
        assert_eq!(t.rows, 3);
        let m = t.numeric(&["age", "score"]).unwrap();
        assert_eq!(m.data()[0], 31.0);
        assert!(m.data()[2].is_nan() && m.data()[3].is_nan());
        assert_eq!(m.data()[5], 300.0);
        assert_eq!(
            t.column("city").unwrap(),
            &Column::Categorical(vec![Some("Oslo".into()), Some("Bergen".into()), None])
        );
        assert!(t.numeric(&["city"]).is_err());
        assert!(t.column("nope").is_err());

        // Forced numeric: a word on line 3 is an error naming line and column.
        let mut o = CsvOptions::default();
        o.types.insert("city".into(), ColType::Numeric);
        let e = Table::from_reader(text.as_bytes(), &o).unwrap_err();
        assert!(
            matches!(&e, MlError::Csv { line: 2, column, .. } if column == "city"),
            "{e}"
        );
        assert!(e.to_string().contains("Oslo"), "{e}");
        // A short record.
        let e = Table::from_reader("a,b\n1,2\n3\n".as_bytes(), &CsvOptions::default()).unwrap_err();
        assert!(matches!(e, MlError::Csv { line: 3, .. }), "{e}");
        // No header, another delimiter.
        let o = CsvOptions {
            has_header: false,
            delimiter: b';',
            ..CsvOptions::default()
        };
        let t = Table::from_reader("1;x\n2;y\n".as_bytes(), &o).unwrap();
        assert_eq!(t.names, ["c0", "c1"]);
        assert_eq!(t.labels("c0").unwrap(), [1, 2]);
        assert!(
            Table::from_reader("v\n1.5\n".as_bytes(), &CsvOptions::default())
                .unwrap()
                .labels("v")
                .is_err()
        );
    }
}
