//! The target host's rules for email addresses (shared INFOMANIAK.md), stricter than
//! RFC 5321/5322: what the host accepts when an address is created.
//!
//! Local part: 1–64 characters; only ASCII letters, digits, `-`, `_` and `.`; a dot
//! never first, never last, never two in a row. Domain: labels of ASCII letters,
//! digits and `-` (not first or last in a label), 1–63 characters each, at least two
//! labels, at most 253 characters. Pure functions with a table test.

/// The first rule an address breaks, in words a user can act on.
pub fn check(address: &str) -> Result<(), String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("no @: an address is local-part@domain".into());
    };
    if local.contains('@') {
        return Err("more than one @".into());
    }
    check_local(local)?;
    check_domain(domain)
}

fn check_local(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("the part before @ is empty".into());
    }
    if let Some(c) = local.chars().find(|c| !c.is_ascii()) {
        return Err(format!("the part before @ has the non-ASCII character {c:?}; only A-Z, a-z, 0-9, '-', '_' and '.' are allowed"));
    }
    if let Some(c) = local.chars().find(|c| c.is_ascii_control()) {
        return Err(format!(
            "the part before @ has a control character ({:#04x})",
            c as u32
        ));
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let what = if c == ' ' {
            "a space".to_string()
        } else {
            format!("{c:?}")
        };
        return Err(format!(
            "the part before @ contains {what}; only A-Z, a-z, 0-9, '-', '_' and '.' are allowed"
        ));
    }
    if local.len() > 64 {
        return Err(format!(
            "the part before @ has {} characters; at most 64 are allowed",
            local.len()
        ));
    }
    if local.starts_with('.') {
        return Err("the part before @ starts with a dot".into());
    }
    if local.ends_with('.') {
        return Err("the part before @ ends with a dot".into());
    }
    if local.contains("..") {
        return Err("the part before @ has two dots in a row".into());
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the domain after @ is empty".into());
    }
    if domain.len() > 253 {
        return Err(format!(
            "the domain has {} characters; at most 253 are allowed",
            domain.len()
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "the domain {domain:?} has no dot; give a full domain like example.ch"
        ));
    }
    for label in labels {
        if label.is_empty() {
            return Err(format!(
                "the domain {domain:?} has an empty label (a leading, trailing or doubled dot)"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "the domain {domain:?} contains {c:?}; labels use only letters, digits and '-' (write an international domain in its xn-- form)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "the domain label {label:?} starts or ends with '-'"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "the domain label {label:?} is longer than 63 characters"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let long64 = format!("{}@example.ch", "a".repeat(64));
        let long65 = format!("{}@example.ch", "a".repeat(65));
        for (addr, want) in [
            ("anna.alpha@example.ch", None),
            ("a-b_c.d9@sub.example-host.ch", None),
            (long64.as_str(), None),
            ("ANNA@EXAMPLE.CH", None),
            ("xn--bcher-kva@xn--bcher-kva.ch", None),
            (long65.as_str(), Some("at most 64")),
            ("anna..alpha@example.ch", Some("two dots in a row")),
            (".anna@example.ch", Some("starts with a dot")),
            ("anna.@example.ch", Some("ends with a dot")),
            ("anna alpha@example.ch", Some("a space")),
            ("anna+tag@example.ch", Some("'+'")),
            ("anna!@example.ch", Some("'!'")),
            ("an#na@example.ch", Some("'#'")),
            ("a\"b@example.ch", Some("'\"'")),
            ("a/b@example.ch", Some("'/'")),
            ("a;b@example.ch", Some("';'")),
            ("a?b@example.ch", Some("'?'")),
            ("a(b)@example.ch", Some("'('")),
            ("a,b@example.ch", Some("','")),
            ("a<b@example.ch", Some("'<'")),
            ("zoë@example.ch", Some("non-ASCII")),
            ("a\tb@example.ch", Some("control character")),
            ("a@b@example.ch", Some("more than one @")),
            ("anna.example.ch", Some("no @")),
            ("@example.ch", Some("is empty")),
            ("anna@", Some("domain after @ is empty")),
            ("anna@localhost", Some("no dot")),
            ("anna@exa_mple.ch", Some("'_'")),
            ("anna@-example.ch", Some("starts or ends with '-'")),
            ("anna@example..ch", Some("empty label")),
            ("anna@bücher.ch", Some("xn--")),
        ] {
            match (check(addr), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{addr}: {e} (wanted {w})"),
                (got, want) => panic!("{addr}: got {got:?}, wanted {want:?}"),
            }
        }
    }
}
