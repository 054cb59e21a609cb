//! `mailferry addresses check FILE.csv`: the target host's address rules applied to
//! a list of addresses, every bad one reported with its row and reason.

use crate::address;
use crate::batch::sniff_delimiter;
use crate::cli::AddressesCheckArgs;
use crate::error::{input, EXIT_INPUT, EXIT_OK};

pub fn check(a: &AddressesCheckArgs) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| input(format!("cannot read {}: {e}", a.file.display())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(sniff_delimiter(text))
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = rd.records();
    let first = match rows.next() {
        Some(r) => r.map_err(|e| input(format!("{}: {e}", a.file.display())))?,
        None => return Err(input(format!("{} is empty", a.file.display()))),
    };
    let header: Vec<String> = first.iter().map(|c| c.to_ascii_lowercase()).collect();
    // A bare list (one column, no --column): the first line is a header only when it
    // reads like a column name, so a bad first address is checked, not skipped.
    let bare = a.column.is_none() && header.len() == 1 && !is_column_name(&header[0]);
    let column = if bare {
        0
    } else if let Some(name) = &a.column {
        header
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                input(format!(
                    "{} has no column {name:?}; its columns are {}",
                    a.file.display(),
                    header.join(", ")
                ))
            })?
    } else if let Some(i) = header
        .iter()
        .position(|c| ["address", "email", "target_user"].contains(&c.as_str()))
    {
        i
    } else if header.len() == 1 {
        0
    } else {
        return Err(input(format!(
            "{}: say which column holds the addresses with --column (columns: {})",
            a.file.display(),
            header.join(", ")
        )));
    };
    let mut checked = 0;
    let mut bad = 0;
    let mut check_one = |row: usize, addr: &str| {
        checked += 1;
        if !crate::batch::looks_like_address(addr) {
            // Not shown: in a file with shifted columns this may be a password.
            bad += 1;
            crate::progress::out(&format!("row {row}: {}", crate::batch::NOT_AN_ADDRESS));
        } else if let Err(why) = address::check(addr) {
            bad += 1;
            crate::progress::out(&format!("row {row}: {addr:?}: {why}"));
        }
    };
    if bare {
        check_one(1, first.get(0).unwrap_or(""));
    }
    for (i, rec) in rows.enumerate() {
        let rec = rec.map_err(|e| input(format!("{}: {e}", a.file.display())))?;
        let row = rec.position().map(|p| p.line() as usize).unwrap_or(i + 2);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        check_one(row, rec.get(column).unwrap_or(""));
    }
    let skipped = if bare {
        String::new()
    } else {
        format!(" (line 1 taken as the header: {})", header.join(", "))
    };
    crate::progress::out(&format!(
        "{checked} addresses checked, {bad} break the host's rules{skipped}"
    ));
    Ok(if bad == 0 { EXIT_OK } else { EXIT_INPUT })
}

/// A header cell: a word or words, no `@` and no `.` (which every address has).
fn is_column_name(cell: &str) -> bool {
    !cell.is_empty()
        && cell
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_or_address() {
        for (cell, header) in [
            ("address", true),
            ("e-mail", true),
            ("target_user", true),
            ("adresse e-mail", true),
            ("anna@example.ch", false),
            ("anna..x.example.ch", false),
            ("anna", true),
            ("", false),
        ] {
            assert_eq!(super::is_column_name(cell), header, "{cell:?}");
        }
    }
}
