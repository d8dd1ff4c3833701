//! Byte-level mutations of valid inputs, as a fuzzer makes them: flip, overwrite, insert
//! (random bytes or a token from a dictionary of the format's interesting values), delete,
//! duplicate a range, truncate. Positions are taken modulo the input's length, so every edit
//! applies to any input and shrinks well.

use proptest::collection::vec;
use proptest::prelude::*;

/// One edit.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Overwrite(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Token(usize, usize),
    Delete(usize, usize),
    Duplicate(usize, usize, usize),
    Truncate(usize),
}

/// Up to `max` edits; `Token` indexes into the dictionary given to [`apply`].
pub fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    let pos = any::<usize>();
    let edit = prop_oneof![
        1 => (pos, 1..=255u8).prop_map(|(p, x)| Edit::Flip(p, x)),
        1 => (pos, vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Edit::Overwrite(p, b)),
        1 => (pos, vec(any::<u8>(), 1..16)).prop_map(|(p, b)| Edit::Insert(p, b)),
        3 => (pos, any::<usize>()).prop_map(|(p, t)| Edit::Token(p, t)),
        1 => (pos, 1..64usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => (pos, 1..64usize, pos).prop_map(|(p, n, at)| Edit::Duplicate(p, n, at)),
        1 => (pos).prop_map(Edit::Truncate),
    ];
    vec(edit, 0..=max)
}

/// Applies `edits` to `data`; `tokens` is the dictionary for [`Edit::Token`].
pub fn apply(mut data: Vec<u8>, edits: &[Edit], tokens: &[&[u8]]) -> Vec<u8> {
    for edit in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        let len = data.len();
        match edit {
            Edit::Flip(p, x) if len > 0 => data[p % len] ^= x,
            Edit::Flip(..) => {}
            Edit::Overwrite(p, bytes) => {
                let start = at(*p, len);
                for (i, b) in bytes.iter().enumerate() {
                    match data.get_mut(start + i) {
                        Some(slot) => *slot = *b,
                        None => data.push(*b),
                    }
                }
            }
            Edit::Insert(p, bytes) => {
                let i = at(*p, len);
                data.splice(i..i, bytes.iter().copied());
            }
            Edit::Token(p, t) if !tokens.is_empty() => {
                let i = at(*p, len);
                data.splice(i..i, tokens[t % tokens.len()].iter().copied());
            }
            Edit::Token(..) => {}
            Edit::Delete(p, n) => {
                let i = at(*p, len);
                data.drain(i..(i + n).min(len));
            }
            Edit::Duplicate(p, n, to) => {
                let i = at(*p, len);
                let copy = data[i..(i + n).min(len)].to_vec();
                let j = at(*to, len);
                data.splice(j..j, copy);
            }
            Edit::Truncate(p) => data.truncate(at(*p, len)),
        }
    }
    data
}

#[test]
fn edits_apply_where_they_say() {
    let data = b"abcdef".to_vec();
    assert_eq!(apply(data.clone(), &[Edit::Delete(1, 2)], &[]), b"adef");
    assert_eq!(
        apply(data.clone(), &[Edit::Token(6, 1)], &[b"x", b"YZ"]),
        b"abcdefYZ"
    );
    assert_eq!(
        apply(data.clone(), &[Edit::Duplicate(0, 2, 2)], &[]),
        b"ababcdef"
    );
    assert_eq!(apply(data.clone(), &[Edit::Truncate(3)], &[]), b"abc");
    assert_eq!(
        apply(data, &[Edit::Overwrite(5, b"XY".to_vec())], &[]),
        b"abcdeXY"
    );
}
