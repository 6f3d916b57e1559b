use super::*;

fn roundtrip(samples: &[(i64, f64)]) -> Chunk {
    let mut c = Chunk::new();
    for &(t, v) in samples {
        c.append(t, v).unwrap();
    }
    let back: Vec<(i64, f64)> = c.iter().collect();
    assert_eq!(back.len(), samples.len());
    for (a, b) in back.iter().zip(samples) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1.to_bits(), b.1.to_bits(), "{} vs {}", a.1, b.1);
    }
    let again: Vec<(i64, f64)> = decode(c.bytes(), c.len() as u16).collect();
    assert_eq!(again.len(), samples.len());
    c
}

#[test]
fn a_regular_counter_costs_about_a_byte_per_sample() {
    let samples: Vec<(i64, f64)> = (0..120).map(|i| (1_700_000_000_000 + i * 15_000, (i * 7) as f64)).collect();
    let c = roundtrip(&samples);
    let per_sample = c.bytes().len() as f64 / 120.0;
    assert!(per_sample < 2.0, "{per_sample} bytes per sample");
}

#[test]
fn jitter_gauges_special_values_and_big_gaps() {
    let mut s = Vec::new();
    let mut t = 1_700_000_000_000i64;
    let mut st = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..119 {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        t += match i % 7 {
            0 => 15_000 + (st % 40) as i64,
            3 => 900_000,
            5 => 86_400_000 * 30,
            _ => 15_000,
        };
        let v = match i % 9 {
            0 => f64::NAN,
            1 => f64::from_bits(0x7ff0_0000_0000_0002), // Prometheus's staleness marker
            2 => f64::INFINITY,
            3 => -0.0,
            4 => 1e300,
            _ => (st % 10_000) as f64 / 7.0,
        };
        s.push((t, v));
    }
    s.push((i64::MAX / 2, 42.0));
    roundtrip(&s);
    roundtrip(&[(-5, 1.0)]);
    roundtrip(&[(-5, 1.0), (-4, 1.0)]);
}

#[test]
fn order_and_capacity_are_enforced() {
    let mut c = Chunk::new();
    c.append(10, 1.0).unwrap();
    assert_eq!(c.append(10, 2.0), Err(AppendError::OutOfOrder));
    assert_eq!(c.append(9, 2.0), Err(AppendError::OutOfOrder));
    for t in 11..(10 + MAX_SAMPLES as i64) {
        c.append(t, 0.0).unwrap();
    }
    assert_eq!(c.append(1_000, 0.0), Err(AppendError::Full));
    assert_eq!(c.time_range(), Some((10, 9 + MAX_SAMPLES as i64)));
}

#[test]
fn corrupt_bytes_end_the_iteration_without_panicking() {
    let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64 * 1.5)).collect();
    let c = roundtrip(&samples);
    let mut st = 7u64;
    for _ in 0..5_000 {
        let mut b = c.bytes().to_vec();
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        let at = (st as usize) % b.len();
        b[at] ^= 1 << (st % 8);
        if st.is_multiple_of(3) {
            b.truncate(at);
        }
        let n = decode(&b, 50).count();
        assert!(n <= 50);
    }
}
