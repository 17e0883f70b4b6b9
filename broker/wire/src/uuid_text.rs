//! Kafka's text form of a UUID, as its tools print topic ids, cluster ids
//! and directory ids: the 16 bytes in URL-safe base64 without padding (22
//! characters).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` in Kafka's text form.
pub fn encode(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        // A chunk of k bytes gives k + 1 characters.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The bytes of a UUID in Kafka's text form; `None` for anything else.
pub fn decode(text: &str) -> Option<[u8; 16]> {
    if text.len() != 22 {
        return None;
    }
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = Vec::with_capacity(16);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | value;
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_kafka() {
        assert_eq!(encode(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(encode(&[0xff; 16]), "_____________________w");
        // Kafka's Uuid.toString of dd5c07d1-79d6-49fa-8de8-30754369f06f.
        let bytes = 0xdd5c07d1_79d6_49fa_8de8_30754369f06f_u128.to_be_bytes();
        assert_eq!(encode(&bytes), "3VwH0XnWSfqN6DB1Q2nwbw");
        assert_eq!(decode("3VwH0XnWSfqN6DB1Q2nwbw"), Some(bytes));
        assert_eq!(decode("not*base64*at*all*xxxx"), None);
        assert_eq!(decode("short"), None);
    }
}
