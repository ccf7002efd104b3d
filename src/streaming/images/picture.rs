//! Stored H.264 frames to images: decode (Cisco's OpenH264), scale, encode (JPEG or PNG).
//! No I/O; CPU-bound, so callers run it on a blocking thread.
//!
//! A stored fragment starts at a keyframe with its parameter sets in the track's `avcC`, so
//! a frame is decoded by decoding its fragment from the start up to it. OpenH264 is a C++
//! library that browsers use on untrusted streams; a panic in the binding is caught and
//! reported as a media error for that image.

use std::panic::{AssertUnwindSafe, catch_unwind};

use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig};
use openh264::formats::YUVSource;
use reel_media::h264::{AvcConfig, sample_to_annex_b};
use reel_media::source::Sample;

use super::request::{Format, Size};

/// A decoded frame as 8-bit RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` RGB triplets, row by row.
    pub rgb: Vec<u8>,
}

/// Why a frame gave no image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PictureError {
    /// The decoder refused the stream or the frame.
    #[error("the H.264 decoder failed: {0}")]
    Decode(String),
    /// The frame decoded to no picture (e.g. it depends on frames that are missing).
    #[error("the frame decoded to no picture")]
    NoPicture,
    /// Encoding the image failed.
    #[error("the image could not be encoded: {0}")]
    Encode(String),
}

/// The pictures of samples `wanted` (indices into `samples`, which start at a keyframe),
/// in the order of `wanted`, decoding `samples` up to the last one wanted.
pub fn decode(config: &AvcConfig, samples: &[Sample<'_>], wanted: &[usize]) -> Vec<Result<Picture, PictureError>> {
    match catch_unwind(AssertUnwindSafe(|| decode_unguarded(config, samples, wanted))) {
        Ok(pictures) => pictures,
        Err(_) => wanted.iter().map(|_| Err(PictureError::Decode("the decoder panicked".into()))).collect(),
    }
}

fn decode_unguarded(
    config: &AvcConfig,
    samples: &[Sample<'_>],
    wanted: &[usize],
) -> Vec<Result<Picture, PictureError>> {
    let mut found: Vec<Option<Result<Picture, PictureError>>> = vec![None; wanted.len()];
    let Some(&last) = wanted.iter().max() else { return Vec::new() };
    let mut decoder = match Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new()) {
        Ok(d) => d,
        Err(e) => return wanted.iter().map(|_| Err(PictureError::Decode(e.to_string()))).collect(),
    };
    let mut annex_b = Vec::new();
    for (i, sample) in samples.iter().enumerate().take(last + 1) {
        annex_b.clear();
        let picture =
            match sample_to_annex_b(sample.data, config.nal_length_size, (i == 0).then_some(config), &mut annex_b) {
                Err(e) => Err(PictureError::Decode(e.to_string())),
                Ok(()) => match decoder.decode(&annex_b) {
                    Ok(Some(yuv)) if wanted.contains(&i) => Ok(to_rgb(&yuv)),
                    Ok(Some(_)) => continue,
                    Ok(None) => Err(PictureError::NoPicture),
                    Err(e) => Err(PictureError::Decode(e.to_string())),
                },
            };
        for (slot, _) in found.iter_mut().zip(wanted).filter(|(_, w)| **w == i) {
            *slot = Some(picture.clone());
        }
    }
    found.into_iter().map(|p| p.unwrap_or(Err(PictureError::NoPicture))).collect()
}

fn to_rgb(yuv: &DecodedYUV<'_>) -> Picture {
    let (w, h) = yuv.dimensions();
    let mut rgb = vec![0; w * h * 3];
    yuv.write_rgb8(&mut rgb);
    Picture { width: u32::try_from(w).unwrap_or(0), height: u32::try_from(h).unwrap_or(0), rgb }
}

/// `picture` at the size `size` asks for.
pub fn resize(picture: &Picture, size: Size) -> Picture {
    let (w, h) = size.of(picture.width, picture.height);
    if (w, h) == (picture.width, picture.height) {
        return picture.clone();
    }
    let (sw, sh) = (picture.width as usize, picture.height as usize);
    let (dw, dh) = (w as usize, h as usize);
    // Rows first (width), then columns (height), each with a triangle filter that widens
    // with the reduction so that every source pixel counts when shrinking. Weights are
    // fixed point (1 << 14), three channels at a time.
    let mut wide = vec![0u8; dw * sh * 3];
    let across = filter_taps(sw, dw);
    for y in 0..sh {
        let row = &picture.rgb[y * sw * 3..(y + 1) * sw * 3];
        for (x, (first, taps)) in across.iter().enumerate() {
            let mut acc = [0i32; 3];
            for (k, &t) in taps.iter().enumerate() {
                let p = &row[(first + k) * 3..(first + k) * 3 + 3];
                for c in 0..3 {
                    acc[c] += t * i32::from(p[c]);
                }
            }
            wide[(y * dw + x) * 3..(y * dw + x) * 3 + 3].copy_from_slice(&acc.map(fixed_to_u8));
        }
    }
    let mut out = vec![0u8; dw * dh * 3];
    let down = filter_taps(sh, dh);
    let line = dw * 3;
    for (y, (first, taps)) in down.iter().enumerate() {
        let mut acc = vec![0i32; line];
        for (k, &t) in taps.iter().enumerate() {
            let src = &wide[(first + k) * line..(first + k + 1) * line];
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += t * i32::from(v);
            }
        }
        for (o, a) in out[y * line..(y + 1) * line].iter_mut().zip(acc) {
            *o = fixed_to_u8(a);
        }
    }
    Picture { width: w, height: h, rgb: out }
}

/// Fixed-point weight scale of [`filter_taps`].
const ONE: i32 = 1 << 14;

/// A fixed-point weighted sum back to a byte, rounded and clamped.
fn fixed_to_u8(v: i32) -> u8 {
    ((v + ONE / 2) >> 14).clamp(0, 255) as u8
}

/// For each of `dst` output positions along an axis of `src` pixels: the first source
/// pixel it reads and the fixed-point weights (summing to [`ONE`]) of it and those after it.
fn filter_taps(src: usize, dst: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = src as f32 / dst.max(1) as f32;
    let support = scale.max(1.0);
    (0..dst)
        .map(|x| {
            let center = (x as f32 + 0.5) * scale - 0.5;
            let first = (center - support).floor().max(0.0) as usize;
            let last = ((center + support).ceil() as usize).min(src.saturating_sub(1));
            let weights: Vec<f32> =
                (first..=last).map(|i| (1.0 - (i as f32 - center).abs() / support).max(0.0)).collect();
            let total: f32 = weights.iter().sum();
            let mut taps: Vec<i32> = if total > 0.0 {
                weights.iter().map(|w| (w / total * ONE as f32).round() as i32).collect()
            } else {
                // Only when the one pixel in reach has no weight: take it whole.
                let mut t = vec![0; weights.len()];
                t[0] = ONE;
                t
            };
            // Rounding may leave the sum a little off: the largest tap takes the difference,
            // so flat colour stays exactly flat.
            let drift = ONE - taps.iter().sum::<i32>();
            if let Some(max) = taps.iter_mut().max_by_key(|t| **t) {
                *max += drift;
            }
            (first, taps)
        })
        .collect()
}

/// `picture` encoded as `format`.
pub fn encode(picture: &Picture, format: Format) -> Result<Vec<u8>, PictureError> {
    let mut out = Vec::new();
    match format {
        Format::Jpeg(quality) => {
            let (w, h) = (u16::try_from(picture.width), u16::try_from(picture.height));
            let (Ok(w), Ok(h)) = (w, h) else { return Err(PictureError::Encode("too large for JPEG".into())) };
            jpeg_encoder::Encoder::new(&mut out, quality)
                .encode(&picture.rgb, w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| PictureError::Encode(e.to_string()))?;
        }
        Format::Png => {
            let mut encoder = png::Encoder::new(&mut out, picture.width, picture.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| PictureError::Encode(e.to_string()))?;
            writer.write_image_data(&picture.rgb).map_err(|e| PictureError::Encode(e.to_string()))?;
            writer.finish().map_err(|e| PictureError::Encode(e.to_string()))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> Picture {
        Picture { width: w, height: h, rgb: rgb.iter().copied().cycle().take((w * h * 3) as usize).collect() }
    }

    #[test]
    fn scaling_keeps_flat_colour_and_averages_stripes() {
        let red = solid(64, 36, [200, 10, 30]);
        for size in [Size::Width(32), Size::Exact(100, 7), Size::Height(72), Size::Exact(1, 1)] {
            let out = resize(&red, size);
            assert_eq!(out.rgb.len(), (out.width * out.height * 3) as usize);
            assert!(out.rgb.chunks(3).all(|p| p == [200, 10, 30]), "{size:?}");
        }
        // Alternating black and white columns shrink to grey, not to one of them.
        let mut stripes = solid(8, 2, [0, 0, 0]);
        for (i, p) in stripes.rgb.chunks_mut(3).enumerate() {
            if i % 2 == 1 {
                p.copy_from_slice(&[255, 255, 255]);
            }
        }
        let grey = resize(&stripes, Size::Exact(2, 1));
        assert!(grey.rgb.iter().all(|v| (100..=155).contains(v)), "{:?}", grey.rgb);
    }

    #[test]
    fn encodings_have_their_signatures() {
        let p = solid(16, 8, [1, 2, 3]);
        let jpeg = encode(&p, Format::Jpeg(80)).expect("jpeg");
        assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
        let png = encode(&p, Format::Png).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let low = encode(&solid(64, 64, [9, 99, 199]), Format::Jpeg(1)).expect("q1");
        let high = encode(&solid(64, 64, [9, 99, 199]), Format::Jpeg(100)).expect("q100");
        assert!(low.len() < high.len(), "quality changes the size: {} vs {}", low.len(), high.len());
    }

    /// The fixture's frames decode to pictures of its size, each frame its own picture.
    #[test]
    fn stored_frames_decode() {
        let frags = crate::testkit::fixture_fragments(1_000_000_000_000).expect("fixture");
        let f = &frags[0];
        let parsed =
            reel_media::source::parse(&f.header, f.chunks.iter().map(|(_, c)| &c[..]), f.producer_ts_ms, f.duration_ms)
                .expect("parse");
        let reel_media::source::Codec::Avc(config) = &parsed.tracks[0].codec else { panic!("video first") };
        let video = &parsed.samples[0];
        let pictures = decode(config, video, &[0, 1, 30, 1]);
        let pictures: Vec<Picture> = pictures.into_iter().map(|p| p.expect("picture")).collect();
        assert!(pictures.iter().all(|p| (p.width, p.height) == (640, 360)));
        assert_eq!(pictures[1], pictures[3], "the same frame twice");
        assert_ne!(pictures[0], pictures[2], "the picture moves");
        // Garbage after the keyframe: no panic, an error for that frame.
        let mut broken: Vec<Sample<'_>> = video[..3].to_vec();
        let junk = [0u8, 0, 0, 4, 0x65, 0xFF, 0x00, 0x13];
        broken[2].data = &junk;
        let out = decode(config, &broken, &[0, 2]);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok(), "the keyframe before the junk still decodes");
    }
}
