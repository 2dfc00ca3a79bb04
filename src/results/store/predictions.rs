//! The predictions Parquet files: written from a pair's rows, read back, and checked whole (and
//! for the confidence columns, which files from before they were stored lack).

use super::*;

/// Whether a predictions file is there and whole: a Parquet file begins and ends with `PAR1`, so
/// a deleted or truncated one fails this without reading the table.
pub(super) fn is_whole_parquet(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let (mut head, mut tail) = ([0u8; 4], [0u8; 4]);
    file.read_exact(&mut head).is_ok()
        && file.seek(SeekFrom::End(-4)).is_ok()
        && file.read_exact(&mut tail).is_ok()
        && &head == b"PAR1"
        && &tail == b"PAR1"
}

/// Whether a predictions file has the confidence columns (read from its footer alone). A file
/// written before they were stored does not, so a run evaluates its pair again; an empty file
/// (a view that scored no row) has nothing to lack.
pub fn has_confidences(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(schema) = ParquetReader::new(file).schema() else {
        return false;
    };
    CONFIDENCE_COLUMNS.iter().all(|c| schema.contains(c)) || parquet_rows(path) == Some(0)
}

/// The number of rows a Parquet file holds, from its footer.
pub(super) fn parquet_rows(path: &Path) -> Option<usize> {
    let file = std::fs::File::open(path).ok()?;
    ParquetReader::new(file).num_rows().ok()
}

pub(crate) fn predictions_parquet(p: Predictions) -> Result<Vec<u8>> {
    let polars_err = |e: PolarsError| Error::Other(format!("writing predictions: {e}"));
    let top5: Vec<Series> = p
        .top5
        .into_iter()
        .map(|ids| Series::new("".into(), ids))
        .collect();
    let judged = |name: &str, column: Column| {
        if p.unlabelled {
            Column::full_null(name.into(), column.len(), column.dtype())
        } else {
            column
        }
    };
    let mut df = DataFrame::new_infer_height(vec![
        Column::new("index".into(), p.index),
        Column::new("path".into(), p.path),
        Column::new("label".into(), p.label),
        judged("target", Column::new("target".into(), p.target)),
        Column::new("top5".into(), top5),
        judged("correct", Column::new("correct".into(), p.correct)),
        judged(
            "correct_top5",
            Column::new("correct_top5".into(), p.correct_top5),
        ),
    ])
    .map_err(polars_err)?;
    let height = df.height();
    if height > 0 && p.confidence.len() == height && p.entropy.len() == height {
        df.with_column(Column::new("confidence".into(), p.confidence))
            .and_then(|df| df.with_column(Column::new("entropy".into(), p.entropy)))
            .map_err(polars_err)?;
    }
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(&mut df)
        .map_err(polars_err)?;
    Ok(bytes)
}

/// Read a predictions file back (used by tests and by the gate).
pub fn read_predictions(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::input(Location::file(path), e.to_string()))
}
