//! IMAP modified UTF-7 for mailbox names (RFC 3501 section 5.1.3).
//!
//! Printable US-ASCII other than `&` stands for itself, `&` is written `&-`, and every
//! other run of characters is UTF-16BE in modified base64 (`,` instead of `/`, no
//! padding) between `&` and `-`. Decoding is lenient only where it is safe: a name
//! that is not valid modified UTF-7 is returned as an error so the caller can keep the
//! raw bytes instead of corrupting the name.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

pub fn decode(name: &[u8]) -> Result<String, String> {
    let bad = || format!("not modified UTF-7: {:?}", String::from_utf8_lossy(name));
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let c = name[i];
        if c != b'&' {
            if !(0x20..=0x7e).contains(&c) {
                return Err(bad());
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        let end = name[i + 1..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| i + 1 + p)
            .ok_or_else(bad)?;
        let run = &name[i + 1..end];
        i = end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut bytes = Vec::new();
        for &c in run {
            let v = B64.iter().position(|&b| b == c).ok_or_else(bad)? as u32;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                bytes.push((bits >> nbits) as u8);
                bits &= (1 << nbits) - 1;
            }
        }
        if bytes.len() % 2 != 0 || bits != 0 {
            return Err(bad());
        }
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let s = String::from_utf16(&units).map_err(|_| bad())?;
        out.push_str(&s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (plain, wire) in [
            ("INBOX", "INBOX"),
            ("Bills & Receipts", "Bills &- Receipts"),
            ("Données/Été 2024", "Donn&AOk-es/&AMk-t&AOk- 2024"),
            ("Архив", "&BBAEQARFBDgEMg-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀", "&2D3eAA-"),
            ("", ""),
        ] {
            assert_eq!(encode(plain), wire, "encode {plain}");
            assert_eq!(decode(wire.as_bytes()).unwrap(), plain, "decode {wire}");
        }
    }

    #[test]
    fn rejects_broken_names() {
        for wire in [&b"&Jjo"[..], b"&Jjo!-", b"caf\xe9", b"&AOk"] {
            assert!(decode(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }
}
