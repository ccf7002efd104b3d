//! Fragmented MP4 (ISO/IEC 14496-12) written by hand: the init segment (`ftyp` + `moov`
//! with `avc1`/`avcC`, `hvc1`/`hvcC`, `Opus`/`dOps` or `mp4a`/`esds` sample entries) and one media segment
//! (`moof` + `mdat`) per stored fragment. No re-encoding: samples are copied as stored.

use crate::aac::AacConfig;
use crate::source::{Codec, Parsed, Track};

/// Appends a box: 32-bit size, type, then whatever `body` writes.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: [`bx`] with version and flags.
fn full(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    bx(out, kind, |o| {
        o.push(version);
        o.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(o);
    })
}

fn u16be(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u32be(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u64be(o: &mut Vec<u8>, v: u64) {
    o.extend_from_slice(&v.to_be_bytes());
}

/// The unity transformation matrix of `mvhd`/`tkhd`.
fn matrix(o: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32be(o, v);
    }
}

/// Movie timescale (ms).
const MOVIE_TIMESCALE: u32 = 1000;

/// `ftyp` for fragmented MP4 (CMAF-compatible brands).
pub fn ftyp(out: &mut Vec<u8>) {
    bx(out, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        u32be(o, 0);
        for b in [b"iso6", b"isom", b"mp41", b"dash", b"cmfc"] {
            o.extend_from_slice(b);
        }
    });
}

/// The init segment for `tracks`; `duration_ms` (if known) goes into `mvhd`/`mehd` so
/// players can show the length of a finished file.
pub fn init_segment(tracks: &[Track], duration_ms: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    ftyp(&mut out);
    bx(&mut out, b"moov", |o| {
        full(o, b"mvhd", 1, 0, |o| {
            u64be(o, 0);
            u64be(o, 0);
            u32be(o, MOVIE_TIMESCALE);
            u64be(o, 0); // duration: fragments carry it (mehd below)
            u32be(o, 0x0001_0000);
            u16be(o, 0x0100);
            o.extend_from_slice(&[0; 10]);
            matrix(o);
            o.extend_from_slice(&[0; 24]);
            u32be(o, tracks.iter().map(|t| t.number as u32).max().unwrap_or(0) + 1);
        });
        for t in tracks {
            trak(o, t);
        }
        bx(o, b"mvex", |o| {
            if let Some(d) = duration_ms {
                full(o, b"mehd", 1, 0, |o| u64be(o, d));
            }
            for t in tracks {
                full(o, b"trex", 0, 0, |o| {
                    u32be(o, t.number as u32);
                    u32be(o, 1);
                    u32be(o, 0);
                    u32be(o, 0);
                    u32be(o, 0);
                });
            }
        });
    });
    out
}

fn trak(o: &mut Vec<u8>, t: &Track) {
    let (width, height) = match &t.codec {
        Codec::Avc(c) => (c.width(), c.height()),
        Codec::Hevc(c) => (c.width, c.height),
        Codec::Opus(_) | Codec::Aac(_) => (0, 0),
    };
    bx(o, b"trak", |o| {
        full(o, b"tkhd", 1, 0x3, |o| {
            u64be(o, 0);
            u64be(o, 0);
            u32be(o, t.number as u32);
            u32be(o, 0);
            u64be(o, 0);
            o.extend_from_slice(&[0; 8]);
            u16be(o, 0); // layer
            u16be(o, 0); // alternate group
            u16be(o, if t.codec.is_audio() { 0x0100 } else { 0 });
            u16be(o, 0);
            matrix(o);
            u32be(o, width << 16);
            u32be(o, height << 16);
        });
        bx(o, b"mdia", |o| {
            full(o, b"mdhd", 1, 0, |o| {
                u64be(o, 0);
                u64be(o, 0);
                u32be(o, t.timescale());
                u64be(o, 0);
                u16be(o, 0x55c4); // 'und'
                u16be(o, 0);
            });
            let (handler, name): (&[u8; 4], &[u8]) =
                if t.codec.is_audio() { (b"soun", b"SoundHandler\0") } else { (b"vide", b"VideoHandler\0") };
            full(o, b"hdlr", 0, 0, |o| {
                u32be(o, 0);
                o.extend_from_slice(handler);
                o.extend_from_slice(&[0; 12]);
                o.extend_from_slice(name);
            });
            bx(o, b"minf", |o| {
                if t.codec.is_audio() {
                    full(o, b"smhd", 0, 0, |o| o.extend_from_slice(&[0; 4]));
                } else {
                    full(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                }
                bx(o, b"dinf", |o| {
                    full(o, b"dref", 0, 0, |o| {
                        u32be(o, 1);
                        full(o, b"url ", 0, 1, |_| {});
                    })
                });
                bx(o, b"stbl", |o| {
                    full(o, b"stsd", 0, 0, |o| {
                        u32be(o, 1);
                        sample_entry(o, &t.codec);
                    });
                    full(o, b"stts", 0, 0, |o| u32be(o, 0));
                    full(o, b"stsc", 0, 0, |o| u32be(o, 0));
                    full(o, b"stsz", 0, 0, |o| {
                        u32be(o, 0);
                        u32be(o, 0);
                    });
                    full(o, b"stco", 0, 0, |o| u32be(o, 0));
                });
            });
        });
    });
}

fn sample_entry(o: &mut Vec<u8>, codec: &Codec) {
    match codec {
        Codec::Avc(cfg) => bx(o, b"avc1", |o| {
            visual_sample_entry(o, cfg.width(), cfg.height());
            bx(o, b"avcC", |o| o.extend_from_slice(&cfg.to_bytes()));
        }),
        // hvc1 (ISO/IEC 14496-15 §8.4.1): the hvcC box is the stored record verbatim.
        Codec::Hevc(cfg) => bx(o, b"hvc1", |o| {
            visual_sample_entry(o, cfg.width, cfg.height);
            bx(o, b"hvcC", |o| o.extend_from_slice(cfg.as_bytes()));
        }),
        Codec::Opus(head) => bx(o, b"Opus", |o| {
            audio_sample_entry(o, u16::from(head.channels), 48_000);
            // dOps (Opus in ISOBMFF §4.3.2): big-endian, unlike OpusHead.
            bx(o, b"dOps", |o| {
                o.push(0);
                o.push(head.channels);
                u16be(o, head.pre_skip);
                u32be(o, head.input_sample_rate);
                o.extend_from_slice(&head.output_gain.to_be_bytes());
                o.push(0);
            });
        }),
        Codec::Aac(cfg) => bx(o, b"mp4a", |o| {
            audio_sample_entry(o, cfg.channels(), cfg.output_sample_rate());
            esds(o, cfg);
        }),
    }
}

/// The `VisualSampleEntry` fields (ISO/IEC 14496-12 §12.1.3) shared by `avc1` and `hvc1`:
/// size, 72 dpi, one frame per sample, an empty compressorname, depth 0x18, pre_defined -1.
fn visual_sample_entry(o: &mut Vec<u8>, width: u32, height: u32) {
    o.extend_from_slice(&[0; 6]);
    u16be(o, 1); // data_reference_index
    o.extend_from_slice(&[0; 16]);
    u16be(o, u16::try_from(width).unwrap_or(u16::MAX));
    u16be(o, u16::try_from(height).unwrap_or(u16::MAX));
    u32be(o, 0x0048_0000);
    u32be(o, 0x0048_0000);
    u32be(o, 0);
    u16be(o, 1); // frame_count
    o.extend_from_slice(&[0; 32]); // compressorname
    u16be(o, 0x0018);
    u16be(o, 0xffff);
}

/// The `AudioSampleEntry` fields (ISO/IEC 14496-12 §12.2.3) shared by `Opus` and `mp4a`.
/// A rate that does not fit the 16.16 field is written as 0, as ffmpeg does: decoders take
/// the rate from the codec configuration box.
fn audio_sample_entry(o: &mut Vec<u8>, channels: u16, sample_rate: u32) {
    o.extend_from_slice(&[0; 6]);
    u16be(o, 1); // data_reference_index
    o.extend_from_slice(&[0; 8]);
    u16be(o, channels);
    u16be(o, 16); // samplesize
    u16be(o, 0);
    u16be(o, 0);
    u32be(o, if sample_rate <= 0xffff { sample_rate << 16 } else { 0 });
}

/// Appends an MPEG-4 descriptor (ISO/IEC 14496-1 §8.3): tag, the size in 7-bit groups
/// (high bit = more follow), then the body.
fn descriptor(o: &mut Vec<u8>, tag: u8, body: &[u8]) {
    o.push(tag);
    let len = body.len();
    let groups = (1..4).take_while(|&k| len >> (7 * k) != 0).count();
    for k in (1..=groups).rev() {
        o.push(0x80 | ((len >> (7 * k)) & 0x7f) as u8);
    }
    o.push((len & 0x7f) as u8);
    o.extend_from_slice(body);
}

/// Tag of the `ES_Descriptor`.
const ES_DESCR_TAG: u8 = 0x03;
/// Tag of the `DecoderConfigDescriptor`.
const DECODER_CONFIG_DESCR_TAG: u8 = 0x04;
/// Tag of the `DecoderSpecificInfo`.
const DEC_SPECIFIC_INFO_TAG: u8 = 0x05;
/// Tag of the `SLConfigDescriptor`.
const SL_CONFIG_DESCR_TAG: u8 = 0x06;
/// `objectTypeIndication` of MPEG-4 audio (ISO/IEC 14496-3).
const OBJECT_TYPE_MPEG4_AUDIO: u8 = 0x40;
/// `streamType` 5 (audio) << 2, `upStream` 0, reserved 1.
const STREAM_TYPE_AUDIO: u8 = (0x05 << 2) | 1;
/// An AAC access unit holds at most 6144 bits per channel (ISO/IEC 14496-3 §4.5.3.1).
const AAC_MAX_BYTES_PER_CHANNEL: u32 = 6144 / 8;

/// The `esds` box (ISO/IEC 14496-14 §5.6): an `ES_Descriptor` whose
/// `DecoderConfigDescriptor` names MPEG-4 audio and carries the `AudioSpecificConfig` as its
/// `DecoderSpecificInfo`, then the `SLConfigDescriptor` MP4 files use (predefined 2).
fn esds(o: &mut Vec<u8>, cfg: &AacConfig) {
    let mut decoder = vec![OBJECT_TYPE_MPEG4_AUDIO, STREAM_TYPE_AUDIO];
    let buffer = AAC_MAX_BYTES_PER_CHANNEL * u32::from(cfg.channels());
    decoder.extend_from_slice(&buffer.to_be_bytes()[1..]); // bufferSizeDB, 24 bits
    decoder.extend_from_slice(&[0; 8]); // maxBitrate, avgBitrate: unknown (variable)
    descriptor(&mut decoder, DEC_SPECIFIC_INFO_TAG, &cfg.config);
    let mut es = vec![0, 0, 0]; // ES_ID 0 (as stored in a file), no dependencies, URL or OCR
    descriptor(&mut es, DECODER_CONFIG_DESCR_TAG, &decoder);
    descriptor(&mut es, SL_CONFIG_DESCR_TAG, &[0x02]);
    full(o, b"esds", 0, 0, |o| descriptor(o, ES_DESCR_TAG, &es));
}

/// Sample flags: sync sample / non-sync sample depending on another.
const FLAGS_SYNC: u32 = 0x0200_0000;
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// The `moof` + `mdat` of one parsed fragment for the selected tracks (`None` = all), with
/// `sequence` as the `mfhd` sequence number and decode times counted from `origin_ms`
/// (0 = the Unix epoch, as HLS/DASH timelines use; the clip start for GetClip). Returns the header (`moof` + `mdat` header)
/// and the sample payloads in mdat order, so callers can stream without copying.
pub fn media_segment<'a>(
    parsed: &Parsed<'a>,
    only: Option<u64>,
    sequence: u32,
    origin_ms: i64,
) -> (Vec<u8>, Vec<&'a [u8]>) {
    let chosen: Vec<usize> =
        (0..parsed.tracks.len()).filter(|&i| only.is_none_or(|n| parsed.tracks[i].number == n)).collect();
    let write = |offsets: &[u32]| {
        let mut o = Vec::with_capacity(256);
        bx(&mut o, b"moof", |o| {
            full(o, b"mfhd", 0, 0, |o| u32be(o, sequence));
            for (k, &i) in chosen.iter().enumerate() {
                let (track, samples) = (&parsed.tracks[i], &parsed.samples[i]);
                bx(o, b"traf", |o| {
                    full(o, b"tfhd", 0, 0x02_0000, |o| u32be(o, track.number as u32));
                    let base = samples.first().map_or(parsed.start_ms, |s| s.time_ms);
                    full(o, b"tfdt", 1, 0, |o| u64be(o, track.ticks(base - origin_ms).max(0) as u64));
                    full(o, b"trun", 0, 0x00_0701, |o| {
                        u32be(o, samples.len() as u32);
                        u32be(o, offsets.get(k).copied().unwrap_or(0));
                        for s in samples {
                            u32be(o, s.duration);
                            u32be(o, s.data.len() as u32);
                            u32be(o, if s.keyframe { FLAGS_SYNC } else { FLAGS_NON_SYNC });
                        }
                    });
                });
            }
        });
        o
    };
    let moof_len = write(&[]).len();
    let mut offsets = Vec::with_capacity(chosen.len());
    let mut payloads = Vec::new();
    let mut at = moof_len + 8;
    for &i in &chosen {
        offsets.push(u32::try_from(at).unwrap_or(u32::MAX));
        for s in &parsed.samples[i] {
            at += s.data.len();
            payloads.push(s.data);
        }
    }
    let mut head = write(&offsets);
    let mdat_len = at - moof_len;
    u32be(&mut head, u32::try_from(mdat_len).unwrap_or(u32::MAX));
    head.extend_from_slice(b"mdat");
    (head, payloads)
}

/// [`media_segment`] joined into one buffer.
pub fn media_segment_bytes(parsed: &Parsed<'_>, only: Option<u64>, sequence: u32, origin_ms: i64) -> Vec<u8> {
    let (mut head, payloads) = media_segment(parsed, only, sequence, origin_ms);
    for p in payloads {
        head.extend_from_slice(p);
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boxes of `data` at one level: (type, body).
    fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while data.len() >= 8 {
            let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
            out.push(([data[4], data[5], data[6], data[7]], &data[8..size]));
            data = &data[size..];
        }
        out
    }

    fn aac(asc: &[u8]) -> AacConfig {
        AacConfig::parse(asc).unwrap()
    }

    #[test]
    fn esds_of_aac_lc_stereo() {
        let mut out = Vec::new();
        esds(&mut out, &aac(&[0x12, 0x10]));
        let want = [
            0, 0, 0, 39, b'e', b's', b'd', b's', 0, 0, 0, 0, // box: size, type, version, flags
            0x03, 25, 0, 0, 0, // ES_Descriptor: ES_ID 0, no flags
            0x04, 17, 0x40, 0x15, // DecoderConfigDescriptor: MPEG-4 audio, audio stream
            0x00, 0x06, 0x00, // bufferSizeDB: 2 × 768
            0, 0, 0, 0, 0, 0, 0, 0, // max/avg bit rate unknown
            0x05, 2, 0x12, 0x10, // DecoderSpecificInfo: the AudioSpecificConfig
            0x06, 1, 0x02, // SLConfigDescriptor: predefined MP4
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn descriptor_sizes_use_continuation_bytes() {
        for (len, head) in [(0usize, vec![0x05, 0]), (127, vec![0x05, 127]), (128, vec![0x05, 0x81, 0x00])] {
            let mut out = Vec::new();
            descriptor(&mut out, 0x05, &vec![0; len]);
            assert_eq!(out[..head.len()], head[..], "len {len}");
            assert_eq!(out.len(), head.len() + len);
        }
        let mut out = Vec::new();
        descriptor(&mut out, 0x05, &vec![0; 300]);
        assert_eq!(out[..3], [0x05, 0x82, 0x2c]);
    }

    #[test]
    fn mp4a_sample_entry_has_channels_rate_and_the_whole_config() {
        let asc = [0x12, 0x10, 0x56, 0xe5, 0x00];
        let mut out = Vec::new();
        sample_entry(&mut out, &Codec::Aac(aac(&asc)));
        let entries = boxes(&out);
        let (kind, body) = entries[0];
        assert_eq!(&kind, b"mp4a");
        assert_eq!(body[6..8], [0, 1], "data_reference_index");
        assert_eq!(body[16..18], [0, 2], "channelcount");
        assert_eq!(body[18..20], [0, 16], "samplesize");
        assert_eq!(body[24..28], (44_100u32 << 16).to_be_bytes(), "samplerate 16.16");
        let inner = boxes(&body[28..]);
        assert_eq!(&inner[0].0, b"esds");
        assert!(inner[0].1.windows(asc.len() + 2).any(|w| w == [&[0x05, 5][..], &asc[..]].concat()));
        // 96 kHz does not fit 16.16: 0, the rate is in the config. 7.1 is 8 channels.
        let mut out = Vec::new();
        sample_entry(&mut out, &Codec::Aac(aac(&[0x10, 0x38])));
        let (_, body) = boxes(&out)[0];
        assert_eq!((&body[16..18], &body[24..28]), (&[0u8, 8][..], &[0u8; 4][..]));
    }

    #[test]
    fn aac_tracks_get_a_sound_handler() {
        let tracks = [Track { number: 2, codec: Codec::Aac(aac(&[0x11, 0x88])) }];
        let init = init_segment(&tracks, None);
        let top = boxes(&init);
        assert_eq!(top.iter().map(|b| &b.0).collect::<Vec<_>>(), [b"ftyp", b"moov"]);
        let find = |needle: &[u8]| init.windows(needle.len()).position(|w| w == needle);
        assert!(find(b"soun").is_some() && find(b"smhd").is_some() && find(b"vide").is_none());
        let mdhd = find(b"mdhd").unwrap();
        // mdhd v1: version/flags, creation, modification (8 each), then the timescale.
        assert_eq!(init[mdhd + 4 + 4 + 16..mdhd + 4 + 4 + 20], 48_000u32.to_be_bytes());
    }

    #[test]
    fn hvc1_sample_entry_carries_the_size_and_the_record_verbatim() {
        let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/ffmpeg-h265.mkv")).unwrap();
        let doc = crate::mkv::parse_document(&data).unwrap();
        let record = doc.tracks[0].codec_private.clone();
        let cfg = crate::hevc::HevcConfig::parse(&record).unwrap();
        let mut out = Vec::new();
        sample_entry(&mut out, &Codec::Hevc(cfg.clone()));
        let entries = boxes(&out);
        assert_eq!(entries.len(), 1);
        let (kind, body) = entries[0];
        assert_eq!(&kind, b"hvc1");
        assert_eq!(body[..8], [0, 0, 0, 0, 0, 0, 0, 1], "reserved, data_reference_index 1");
        assert_eq!(body[24..28], [0x01, 0x40, 0x00, 0xf0], "320 × 240");
        assert_eq!(body[28..36], [0, 0x48, 0, 0, 0, 0x48, 0, 0], "72 dpi");
        assert_eq!(body[40..42], [0, 1], "frame_count");
        assert_eq!(body[42..74], [0; 32], "compressorname");
        assert_eq!(body[74..78], [0x00, 0x18, 0xff, 0xff], "depth, pre_defined -1");
        let inner = boxes(&body[78..]);
        assert_eq!(inner.len(), 1);
        assert_eq!(&inner[0].0, b"hvcC");
        assert_eq!(inner[0].1, &record[..]);
        let init = init_segment(&[Track { number: 1, codec: Codec::Hevc(cfg) }], None);
        let find = |needle: &[u8]| init.windows(needle.len()).position(|w| w == needle);
        assert!(find(b"vide").is_some() && find(b"vmhd").is_some() && find(b"hvcC").is_some());
    }
}
