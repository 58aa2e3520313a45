//! A trained model as one compact, versioned byte string: how the day-one model travels inside the binary
//! (see [`super::day_one`]), and how a model trained at one installation can be carried to another.
//!
//! What is kept is what scoring reads, pruned to what moves a score: the message totals, the Bayes counts of
//! tokens met in at least `min_messages` trained messages, and the linear model's weights of at least
//! `min_weight` in magnitude, quantised to 16 bits (a model trained on 4,550 messages gives 1.2 million
//! non-zero weights, most of them features met once; 0.05 keeps a fifth of them, 98% of the weights' squared
//! sum). The local head (`LinearModel::local_score`) stays behind: it reads how one organisation's
//! correspondents write their headers, which is not true elsewhere. Slots are written as varint gaps. Integers are little-endian; the whole is zstd-compressed. Decoding
//! checks every length against the bytes that remain before it allocates, so a damaged file is an error, not
//! a crash or a huge allocation.

use super::{BayesCounts, LinearModel, Model};

const MAGIC: &[u8; 8] = b"MSMODEL1";

/// How much [`encode`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct Pruning {
    /// Bayes tokens met in fewer trained messages are left out.
    pub min_messages: u32,
    /// Linear weights smaller in magnitude are left out.
    pub min_weight: f32,
}

impl Pruning {
    /// Everything (for tests: the decoded model scores like the original, up to the quantisation).
    pub const NONE: Pruning = Pruning { min_messages: 1, min_weight: 0.0 };
}

/// Encodes the parts of `model` that scoring reads, pruned as `pruning` says.
pub fn encode(model: &Model, pruning: Pruning) -> Vec<u8> {
    let min_messages = pruning.min_messages;
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&model.bayes.ham.to_le_bytes());
    out.extend_from_slice(&model.bayes.spam.to_le_bytes());
    let mut tokens: Vec<(u64, [u32; 2])> = model
        .bayes
        .tokens
        .iter()
        .filter(|(_, c)| c[0].saturating_add(c[1]) >= min_messages.max(1))
        .map(|(id, c)| (*id, *c))
        .collect();
    tokens.sort_unstable_by_key(|t| t.0);
    out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    for (id, [h, s]) in &tokens {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&model.linear.updates.to_le_bytes());
    out.extend_from_slice(&model.linear.bias.to_le_bytes());
    let weights: Vec<(u32, f32)> = model
        .linear
        .weights
        .iter()
        .take(super::linear::PORTABLE)
        .enumerate()
        .filter(|(_, w)| w.abs() >= pruning.min_weight && **w != 0.0)
        .map(|(i, w)| (i as u32, *w))
        .collect();
    let largest = weights.iter().map(|(_, w)| w.abs()).fold(0.0f32, f32::max);
    let step = if largest > 0.0 { largest / i16::MAX as f32 } else { 1.0 };
    out.extend_from_slice(&(weights.len() as u64).to_le_bytes());
    out.extend_from_slice(&step.to_le_bytes());
    let mut last = 0u32;
    for (slot, w) in &weights {
        write_varint(&mut out, slot - last);
        last = *slot;
        out.extend_from_slice(&((w / step).round() as i16).to_le_bytes());
    }
    zstd::bulk::compress(&out, 19).expect("compressing into memory does not fail")
}

/// Decodes what [`encode`] wrote.
pub fn decode(compressed: &[u8]) -> Result<Model, String> {
    use std::io::Read;
    // The largest model encode writes: 3 million tokens (the store's default ceiling) and every weight. The
    // output grows as it is read, so a small file cannot make this allocate the ceiling.
    const MAX_BYTES: u64 = (8 + 16 + 8 + 3_000_000 * 16 + 8 + 4 + 8 + super::linear::PORTABLE * 8) as u64;
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(compressed)
        .and_then(|d| d.take(MAX_BYTES + 1).read_to_end(&mut raw))
        .map_err(|e| format!("not a compressed model: {e}"))?;
    if raw.len() as u64 > MAX_BYTES {
        return Err("larger than any model".into());
    }
    let mut r = Reader { bytes: &raw };
    if r.take(8)? != MAGIC {
        return Err("not a mailsift model (wrong magic)".into());
    }
    let mut bayes = BayesCounts { ham: r.u64()?, spam: r.u64()?, ..BayesCounts::default() };
    let n = r.count(16)?;
    bayes.tokens.reserve(n);
    for _ in 0..n {
        let id = r.u64()?;
        let counts = [r.u32()?, r.u32()?];
        bayes.tokens.insert(id, counts);
    }
    let mut linear = LinearModel { updates: r.u64()?, bias: r.f32()?, ..LinearModel::default() };
    // Each weight takes at least 3 bytes: a one-byte gap and an i16.
    let n = r.count(3)?;
    let step = r.f32()?;
    if !step.is_finite() || step <= 0.0 {
        return Err(format!("the weights' step {step} is not a positive number"));
    }
    let mut slot = 0usize;
    for i in 0..n {
        let gap = r.varint()? as usize;
        slot = slot.saturating_add(gap);
        if (i > 0 && gap == 0) || slot >= super::linear::PORTABLE {
            return Err(format!("linear weight slot {slot} is out of order or range"));
        }
        linear.weights[slot] = r.i16()? as f32 * step;
    }
    if !r.bytes.is_empty() {
        return Err(format!("{} bytes after the end of the model", r.bytes.len()));
    }
    if !linear.bias.is_finite() {
        return Err("the linear bias is not a number".into());
    }
    Ok(Model { bayes, linear, combination: None })
}

fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("the model ends early".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    /// An unsigned LEB128 number of at most 32 bits.
    fn varint(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= ((b & 0x7f) as u32).checked_shl(shift).filter(|_| shift < 32).ok_or("a varint is too long")?;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is too long".into())
    }

    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// A record count, checked against the bytes left (each record `size` bytes) before anything is
    /// allocated for it.
    fn count(&mut self, size: usize) -> Result<usize, String> {
        let n = self.u64()?;
        match usize::try_from(n).ok().and_then(|n| n.checked_mul(size)) {
            Some(len) if len <= self.bytes.len() => Ok(n as usize),
            _ => Err(format!("{n} records do not fit in the {} bytes left", self.bytes.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained() -> Model {
        let mut m = Model::default();
        for i in 0..50u64 {
            let spam = i % 2 == 0;
            let ids: Vec<u64> =
                (0..20u64).map(|t| (t + if spam { 0 } else { 10 }).wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
            m.bayes.apply(&ids, spam, 1);
            m.linear.step(&ids, spam, 1.0);
        }
        m.bayes.apply(&[42], true, 1); // met once
        m
    }

    #[test]
    fn round_trip_keeps_what_scoring_reads() {
        let m = trained();
        let back = decode(&encode(&m, Pruning { min_messages: 2, min_weight: 0.0 })).unwrap();
        assert_eq!((back.bayes.ham, back.bayes.spam), (m.bayes.ham, m.bayes.spam));
        assert_eq!(back.bayes.tokens.len(), m.bayes.tokens.len() - 1, "the token met once is left out");
        assert!(!back.bayes.tokens.contains_key(&42));
        let largest = m.linear.weights.iter().map(|w| w.abs()).fold(0.0, f32::max);
        for (a, b) in back.linear.weights.iter().zip(&m.linear.weights) {
            assert!((a - b).abs() <= largest / 32767.0, "{a} against {b}");
        }
        assert_eq!((back.linear.bias, back.linear.updates), (m.linear.bias, m.linear.updates));
        let all = decode(&encode(&m, Pruning::NONE)).unwrap();
        assert_eq!(all.bayes.tokens, m.bayes.tokens);
        // Pruned weights are gone, the others kept.
        let cut = largest / 2.0;
        let pruned = decode(&encode(&m, Pruning { min_messages: 1, min_weight: cut })).unwrap();
        for (a, b) in pruned.linear.weights.iter().zip(&m.linear.weights) {
            assert_eq!(*a == 0.0, b.abs() < cut, "{a} against {b}");
        }
    }

    #[test]
    fn damaged_models_are_errors() {
        let good = encode(&trained(), Pruning::NONE);
        assert!(decode(&good[..good.len() / 2]).is_err());
        assert!(decode(b"not zstd").is_err());
        let raw = zstd::bulk::decompress(&good, 1 << 20).unwrap();
        for cut in [0, 7, 8, 20, 40, raw.len() - 1] {
            let short = zstd::bulk::compress(&raw[..cut], 1).unwrap();
            assert!(decode(&short).is_err(), "cut at {cut}");
        }
        // A token count far beyond the bytes: refused before allocating.
        let mut huge = raw.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&zstd::bulk::compress(&huge, 1).unwrap()).unwrap_err().contains("do not fit"));
        let mut longer = raw;
        longer.push(0);
        assert!(decode(&zstd::bulk::compress(&longer, 1).unwrap()).is_err());
    }
}
