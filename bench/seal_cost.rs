//! What sealing one blob costs, by size: forebay's `Sealer` (AES-256-GCM-SIV, random
//! nonce, the associated data of a request body) sealing and opening, beside
//! XChaCha20-Poly1305 doing the same work, in one run.
//!
//! Usage: cargo run --release --example seal-cost

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use forebay::store::seal::{Field, KeyBytes, Keys, Place, Sealer};

const EVENT: &str = "evt_0190a1b2c3d4e5f60718293a4b5c6d7e";

/// Microseconds per call of `f`, over `n` calls.
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let sealer = Sealer::new(&Keys {
        keys: BTreeMap::from([("k1".to_owned(), KeyBytes([7; 32]))]),
        active: Some("k1".into()),
    });
    let xchacha = XChaCha20Poly1305::new(&Key::from([7; 32]));
    let place = Place::new(Field::RequestBody, EVENT);
    println!("| blob | AES-256-GCM-SIV seal | open | XChaCha20-Poly1305 seal |");
    println!("|---:|---:|---:|---:|");
    for size in [256usize, 1024, 4096, 65536] {
        let plain = vec![b'x'; size];
        let n = (50_000_000 / size).clamp(2_000, 200_000);
        let seal = per_call(n, || {
            black_box(sealer.seal(place, black_box(&plain)));
        });
        let sealed = sealer.seal(place, &plain);
        let open = per_call(n, || {
            black_box(sealer.open(place, black_box(sealed.clone())).unwrap());
        });
        let other = per_call(n, || {
            let nonce: [u8; 24] = rand::random();
            let mut out = plain.clone();
            let tag = xchacha
                .encrypt_inout_detached(&XNonce::from(nonce), b"aad", out.as_mut_slice().into())
                .unwrap();
            out.extend_from_slice(&tag);
            black_box(out);
        });
        println!("| {size} B | {seal:.2} µs | {open:.2} µs | {other:.2} µs |");
    }
}
