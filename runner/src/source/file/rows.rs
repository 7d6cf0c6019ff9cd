//! Reading a file's rows from a saved position: CSV (a header line, then one object per
//! row, every value a string) or JSON Lines (one JSON value per line). A row that cannot
//! be read as a record comes back as [`RowContent::Invalid`] with its raw bytes and the
//! reason, and reading goes on with the next row; only an I/O error stops a reader.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Seek, SeekFrom},
    os::unix::fs::FileExt,
};

use serde::{Deserialize, Serialize};

use entrepot_api::resource::FileFormat;

/// Where a reader stands in a file: enough to resume at the next row after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Byte offset of the next row.
    pub byte: u64,
    /// 1-based line number of the next row.
    pub line: u64,
    /// Rows (and, for CSV, the header) read before the next row.
    pub record: u64,
}

impl Position {
    /// The start of a file.
    pub const START: Self = Self { byte: 0, line: 1, record: 0 };
}

/// One row of a file.
#[derive(Debug)]
pub struct Row {
    /// 1-based line number where the row starts.
    pub line: u64,
    /// The row as a record, or why it is not one.
    pub content: RowContent,
}

/// What a row holds.
#[derive(Debug)]
pub enum RowContent {
    /// The row as JSON: an object keyed by column for CSV, the line itself for JSON Lines.
    Record(Vec<u8>),
    /// The row could not be read as a record.
    Invalid {
        /// The row as written (a CSV row re-quoted as one line), kept for inspection.
        raw: Vec<u8>,
        /// Why.
        problem: InvalidRow,
    },
}

/// Why a row is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRow {
    /// The CSV header line cannot name the columns; no row of the file is read.
    #[error("the header line {0}; fix the header and drop the file again")]
    Header(String),
    /// A CSV row with more or fewer fields than the header.
    #[error("{} where the header has {expected}", match found { 1 => "1 field".to_string(), n => format!("{n} fields") })]
    FieldCount {
        /// Columns in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// Bytes that are not UTF-8.
    #[error("invalid UTF-8 {0}")]
    Utf8(String),
    /// A JSON Lines line that is not one JSON value.
    #[error("invalid JSON at column {column}: {message}")]
    Json {
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
}

/// Reads rows of one file in either format.
pub enum RowReader {
    /// A CSV file.
    Csv(CsvRows),
    /// A JSON Lines file.
    Jsonl(JsonlRows),
}

impl RowReader {
    /// Opens `file` to read the rows from `from` on (the header of a CSV file is always
    /// read first, from the start).
    pub fn open(file: File, format: FileFormat, from: Position) -> io::Result<Self> {
        Ok(match format {
            FileFormat::Csv => Self::Csv(CsvRows::open(file, from)?),
            FileFormat::Jsonl => Self::Jsonl(JsonlRows::open(file, from)?),
        })
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> io::Result<Option<Row>> {
        match self {
            Self::Csv(r) => r.next_row(),
            Self::Jsonl(r) => r.next_row(),
        }
    }

    /// Where the next row starts.
    pub fn position(&self) -> Position {
        match self {
            Self::Csv(r) => r.position(),
            Self::Jsonl(r) => r.position,
        }
    }
}

/// Rows of a CSV file.
pub struct CsvRows {
    reader: csv::Reader<File>,
    /// The column names, or why the header cannot name them (reported once, as line 1).
    columns: Result<Vec<String>, Option<Row>>,
    record: csv::ByteRecord,
}

impl CsvRows {
    fn open(file: File, from: Position) -> io::Result<Self> {
        // Flexible: a row with the wrong number of fields is reported by us, with the
        // row, rather than by the reader as an error that says less.
        let mut reader = csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(file);
        let header = reader.byte_headers().map_err(csv_io)?.clone();
        let header_line = first_line(reader.get_ref(), &csv::Position::new())?;
        let columns = header_columns(&header).map_err(|problem| {
            Some(Row { line: header_line, content: RowContent::Invalid { raw: csv_line(&header), problem } })
        });
        if from != Position::START && columns.is_ok() {
            let mut pos = csv::Position::new();
            pos.set_byte(from.byte).set_line(from.line).set_record(from.record);
            reader.seek(pos).map_err(csv_io)?;
        }
        Ok(Self { reader, columns, record: csv::ByteRecord::new() })
    }

    fn next_row(&mut self) -> io::Result<Option<Row>> {
        let columns = match &mut self.columns {
            Ok(columns) => columns,
            // A bad header is one invalid row, and the end of the file.
            Err(bad_header) => return Ok(bad_header.take()),
        };
        if !self.reader.read_byte_record(&mut self.record).map_err(csv_io)? {
            return Ok(None);
        }
        let start = self.record.position().cloned().unwrap_or_else(csv::Position::new);
        let line = first_line(self.reader.get_ref(), &start)?;
        let invalid = |record: &csv::ByteRecord, problem| RowContent::Invalid { raw: csv_line(record), problem };
        if self.record.len() != columns.len() {
            let problem = InvalidRow::FieldCount { expected: columns.len(), found: self.record.len() };
            return Ok(Some(Row { line, content: invalid(&self.record, problem) }));
        }
        let mut object = serde_json::Map::with_capacity(columns.len());
        for (column, value) in columns.iter().zip(self.record.iter()) {
            match std::str::from_utf8(value) {
                Ok(text) => {
                    object.insert(column.clone(), serde_json::Value::String(text.to_string()));
                }
                Err(_) => {
                    let problem = InvalidRow::Utf8(format!("in column `{column}`"));
                    return Ok(Some(Row { line, content: invalid(&self.record, problem) }));
                }
            }
        }
        let json = serde_json::to_vec(&object).expect("a map of strings serializes");
        Ok(Some(Row { line, content: RowContent::Record(json) }))
    }

    fn position(&self) -> Position {
        let pos = self.reader.position();
        Position { byte: pos.byte(), line: pos.line(), record: pos.record() }
    }
}

/// The column names of a CSV header, or why it cannot name the columns.
fn header_columns(header: &csv::ByteRecord) -> Result<Vec<String>, InvalidRow> {
    let mut columns: Vec<String> = Vec::with_capacity(header.len());
    for (i, name) in header.iter().enumerate() {
        let name = std::str::from_utf8(name)
            .map_err(|_| InvalidRow::Header(format!("has invalid UTF-8 in column {}", i + 1)))?
            .trim();
        if name.is_empty() {
            return Err(InvalidRow::Header(format!("leaves column {} without a name", i + 1)));
        }
        if columns.iter().any(|c| c == name) {
            return Err(InvalidRow::Header(format!("names column `{name}` twice")));
        }
        columns.push(name.to_string());
    }
    Ok(columns)
}

/// The line a CSV record really starts on. The reader dates a record from where the
/// previous one ended: before the blank lines it skipped and, in a CRLF file, before the
/// `\n` that ends the previous line. Those are counted here, by looking at the bytes
/// (a positioned read, so the reader's own cursor does not move).
fn first_line(file: &File, start: &csv::Position) -> io::Result<u64> {
    let (mut line, mut offset) = (start.line(), start.byte());
    let mut buf = [0u8; 64];
    loop {
        let n = file.read_at(&mut buf, offset)?;
        let skipped = buf[..n].iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        line += buf[..skipped].iter().filter(|&&b| b == b'\n').count() as u64;
        if n == 0 || skipped < n {
            return Ok(line);
        }
        offset += n as u64;
    }
}

/// A CSV record written back as one CSV line, without its line ending.
fn csv_line(record: &csv::ByteRecord) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = writer.write_byte_record(record);
    let mut line = writer.into_inner().unwrap_or_default();
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    line
}

/// With flexible byte records the CSV reader only fails on I/O.
fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// Rows of a JSON Lines file.
pub struct JsonlRows {
    reader: BufReader<File>,
    position: Position,
    buf: Vec<u8>,
}

impl JsonlRows {
    fn open(mut file: File, from: Position) -> io::Result<Self> {
        file.seek(SeekFrom::Start(from.byte))?;
        Ok(Self { reader: BufReader::new(file), position: from, buf: Vec::new() })
    }

    fn next_row(&mut self) -> io::Result<Option<Row>> {
        loop {
            self.buf.clear();
            let read = self.reader.read_until(b'\n', &mut self.buf)?;
            if read == 0 {
                return Ok(None);
            }
            let line = self.position.line;
            self.position.byte += read as u64;
            self.position.line += 1;
            let mut text = self.buf.as_slice();
            if line == 1 {
                text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
            }
            let text = text.trim_ascii();
            if text.is_empty() {
                continue;
            }
            self.position.record += 1;
            let invalid = |problem| RowContent::Invalid { raw: text.to_vec(), problem };
            let content = if std::str::from_utf8(text).is_err() {
                invalid(InvalidRow::Utf8("in the line".into()))
            } else {
                match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
                    // What serde_json skips over and the Mapping's reader refuses (a lone
                    // surrogate escape, nesting past the depth limit) is refused here, with
                    // its line, rather than dead-lettered later without one (found by the
                    // `records` fuzz target).
                    Ok(_) => match entrepot_api::mapping::parse_json(text) {
                        Ok(_) => RowContent::Record(text.to_vec()),
                        Err(e) => {
                            let message = e.to_string();
                            // "… byte offset N: what": the column is N + 1 on a line of its own.
                            let (column, message) = message
                                .split_once("byte offset ")
                                .and_then(|(_, at)| at.split_once(": "))
                                .and_then(|(n, what)| Some((n.parse::<usize>().ok()? + 1, what.to_string())))
                                .unwrap_or((1, message));
                            invalid(InvalidRow::Json { column, message })
                        }
                    },
                    Err(e) => {
                        // serde_json says "… at line 1 column N": the line is ours to give.
                        let message = e.to_string();
                        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
                        invalid(InvalidRow::Json { column: e.column(), message })
                    }
                }
            };
            return Ok(Some(Row { line, content }));
        }
    }
}
