//! Embeddings as the semantic index keeps them: one signed byte per
//! dimension, a quarter of f32's size. A vector is scaled so that its
//! largest component is ±127 (not its norm to 127: a unit vector of 4096
//! dimensions has components near 2/127, and rounding those lowers the
//! cosine of two near-identical vectors by about 0.02, enough to miss a
//! 0.95 threshold). Cosine does not depend on scale, so nothing else is
//! stored. Similarity is the cosine of the quantised vectors, computed
//! with integer dot products; against the float cosine it is off by well
//! under 0.01 (tested below), small next to the gap between a paraphrase
//! and a different question.

/// Vectors longer than this are refused (the largest common embedding
/// models have 3072 or 4096 dimensions); with the index's entry cap it
/// bounds the work of one lookup.
pub const MAX_DIMENSIONS: usize = 4096;
const SCALE: f32 = 127.0;

/// A direction, one `i8` per dimension, its largest component ±127.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantised(Vec<i8>);

impl Quantised {
    /// `None` for an empty vector, one over [`MAX_DIMENSIONS`], one with a
    /// non-finite component, or one of length zero. Any scale will do.
    pub fn from_floats(vector: &[f32]) -> Option<Quantised> {
        if vector.is_empty() || vector.len() > MAX_DIMENSIONS || !vector.iter().all(|x| x.is_finite()) {
            return None;
        }
        let largest = vector.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max);
        if largest == 0.0 {
            return None;
        }
        let scale = f64::from(SCALE) / largest;
        let bytes: Vec<i8> = vector
            .iter()
            .map(|x| (f64::from(*x) * scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        // The largest component is ±127.
        Some(Quantised(bytes))
    }

    /// The stored form (`None`: empty, too long, or all zero).
    pub fn from_bytes(bytes: &[u8]) -> Option<Quantised> {
        let values: Vec<i8> = bytes.iter().map(|byte| *byte as i8).collect();
        let valid = !values.is_empty() && values.len() <= MAX_DIMENSIONS && values.iter().any(|v| *v != 0);
        valid.then_some(Quantised(values))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().map(|value| *value as u8).collect()
    }

    pub fn dimensions(&self) -> usize {
        self.0.len()
    }

    /// The cosine of the two vectors; `None` when their dimensions differ
    /// (another model's vector says nothing about this one's). At most
    /// 4096 × 127² per sum, so `i32` cannot overflow.
    pub fn cosine(&self, other: &Quantised) -> Option<f32> {
        if self.0.len() != other.0.len() {
            return None;
        }
        let (mut dot, mut left, mut right) = (0i32, 0i32, 0i32);
        for (a, b) in self.0.iter().zip(&other.0) {
            let (a, b) = (i32::from(*a), i32::from(*b));
            dot += a * b;
            left += a * a;
            right += b * b;
        }
        let norms = (f64::from(left) * f64::from(right)).sqrt();
        (norms > 0.0).then(|| (f64::from(dot) / norms) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random vector (xorshift), components in [-1, 1).
    fn noise(seed: u64, dimensions: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..dimensions)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn float_cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn the_quantised_cosine_follows_the_float_cosine() {
        for dimensions in [8, 256, 1536, 4096] {
            let base = noise(1, dimensions);
            for (step, mix) in [0.0f32, 0.1, 0.3, 0.6, 1.0].iter().enumerate() {
                let other: Vec<f32> = base
                    .iter()
                    .zip(noise(step as u64 + 2, dimensions))
                    .map(|(a, b)| a * (1.0 - mix) + b * mix)
                    .collect();
                let exact = float_cosine(&base, &other);
                let quantised = Quantised::from_floats(&base)
                    .unwrap()
                    .cosine(&Quantised::from_floats(&other).unwrap())
                    .unwrap();
                assert!(
                    (exact - quantised).abs() < 0.01,
                    "{dimensions} {mix}: {exact} vs {quantised}"
                );
            }
        }
    }

    #[test]
    fn scale_does_not_matter_and_equal_vectors_score_one() {
        let v = noise(5, 64);
        let doubled: Vec<f32> = v.iter().map(|x| x * 2.0).collect();
        let (a, b) = (
            Quantised::from_floats(&v).unwrap(),
            Quantised::from_floats(&doubled).unwrap(),
        );
        assert_eq!(a, b);
        assert!((a.cosine(&b).unwrap() - 1.0).abs() < 1e-6);
        let negated: Vec<f32> = v.iter().map(|x| -x).collect();
        assert!(a.cosine(&Quantised::from_floats(&negated).unwrap()).unwrap() < -0.99);
    }

    #[test]
    fn unusable_vectors_are_refused() {
        assert_eq!(Quantised::from_floats(&[]), None);
        assert_eq!(Quantised::from_floats(&[0.0; 8]), None);
        assert_eq!(Quantised::from_floats(&[1.0, f32::NAN]), None);
        assert_eq!(Quantised::from_floats(&[1.0, f32::INFINITY]), None);
        assert_eq!(Quantised::from_floats(&vec![0.1; MAX_DIMENSIONS + 1]), None);
        assert!(Quantised::from_floats(&vec![0.1; MAX_DIMENSIONS]).is_some());
        assert!(
            Quantised::from_floats(&[f32::MAX, f32::MAX]).is_some(),
            "no overflow in the norm"
        );
        assert_eq!(Quantised::from_bytes(&[]), None);
        assert_eq!(Quantised::from_bytes(&[0, 0]), None);
    }

    #[test]
    fn vectors_of_other_dimensions_never_compare() {
        let a = Quantised::from_floats(&[1.0, 0.0]).unwrap();
        let b = Quantised::from_floats(&[1.0, 0.0, 0.0]).unwrap();
        assert_eq!(a.cosine(&b), None);
    }

    #[test]
    fn the_stored_form_round_trips() {
        let v = Quantised::from_floats(&noise(9, 300)).unwrap();
        assert_eq!(Quantised::from_bytes(&v.to_bytes()), Some(v.clone()));
        assert_eq!(v.dimensions(), 300);
    }
}
