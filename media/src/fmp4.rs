//! Fragmented MP4 (ISO/IEC 14496-12) written by hand: the init segment (`ftyp` + `moov`
//! with `avc1`/`avcC` and `Opus`/`dOps` sample entries) and one media segment (`moof` +
//! `mdat`) per stored fragment. No re-encoding: samples are copied as stored.

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
        Codec::Opus(_) => (0, 0),
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
            u16be(o, if matches!(t.codec, Codec::Opus(_)) { 0x0100 } else { 0 });
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
            let (handler, name): (&[u8; 4], &[u8]) = match t.codec {
                Codec::Avc(_) => (b"vide", b"VideoHandler\0"),
                Codec::Opus(_) => (b"soun", b"SoundHandler\0"),
            };
            full(o, b"hdlr", 0, 0, |o| {
                u32be(o, 0);
                o.extend_from_slice(handler);
                o.extend_from_slice(&[0; 12]);
                o.extend_from_slice(name);
            });
            bx(o, b"minf", |o| {
                match t.codec {
                    Codec::Avc(_) => full(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8])),
                    Codec::Opus(_) => full(o, b"smhd", 0, 0, |o| o.extend_from_slice(&[0; 4])),
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
            o.extend_from_slice(&[0; 6]);
            u16be(o, 1); // data_reference_index
            o.extend_from_slice(&[0; 16]);
            u16be(o, u16::try_from(cfg.width()).unwrap_or(u16::MAX));
            u16be(o, u16::try_from(cfg.height()).unwrap_or(u16::MAX));
            u32be(o, 0x0048_0000);
            u32be(o, 0x0048_0000);
            u32be(o, 0);
            u16be(o, 1); // frame_count
            o.extend_from_slice(&[0; 32]); // compressorname
            u16be(o, 0x0018);
            u16be(o, 0xffff);
            bx(o, b"avcC", |o| o.extend_from_slice(&cfg.to_bytes()));
        }),
        Codec::Opus(head) => bx(o, b"Opus", |o| {
            o.extend_from_slice(&[0; 6]);
            u16be(o, 1);
            o.extend_from_slice(&[0; 8]);
            u16be(o, u16::from(head.channels));
            u16be(o, 16);
            u16be(o, 0);
            u16be(o, 0);
            u32be(o, 48_000 << 16);
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
    }
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
