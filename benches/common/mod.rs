//! Helpers shared by the benchmarks.

/// A deterministic UUID4-shaped queue id for entry `i`.
pub fn uuid(i: usize) -> String {
    let h = format!(
        "{:032x}",
        (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    );
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}
