//! CSV and JSON Lines record parsing, as the file source reads a dropped file: the first
//! byte picks the format, the rest is the file. Whatever the bytes, every row comes back
//! either as a record the Mapping can read (`entrepot_api::mapping::parse_json`, depth
//! limit included) or as an invalid row with its reason, and the reader ends.
#![no_main]

use std::io::{Seek, Write};

use entrepot::source::file::{RowContent, RowReader};
use entrepot_api::resource::FileFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, content)) = data.split_first() else { return };
    let format = if which & 1 == 0 { FileFormat::Csv } else { FileFormat::Jsonl };
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(content).expect("written");
    file.rewind().expect("rewound");
    let Ok(mut rows) = RowReader::open(file, format, entrepot::source::file::Position::START) else { return };
    // A row takes at least one byte, except the header's report: a bound on the rows.
    for _ in 0..=content.len() + 1 {
        match rows.next_row() {
            Ok(Some(row)) => {
                if let RowContent::Record(json) = &row.content {
                    if let Err(e) = entrepot_api::mapping::parse_json(json) {
                        panic!("a record the Mapping cannot read ({e}): {}", String::from_utf8_lossy(json));
                    }
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("more rows than bytes: the reader does not end");
});
