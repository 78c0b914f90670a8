//! Centre crops of reference frames, so portrait and 4:3 re-streams of a landscape broadcast match.
//!
//! PDQ compares whole pictures: a phone app that streams the centre 9:16 of a 16:9 broadcast
//! shows a picture whose hash has nothing in common with the broadcast's. Query-side we cannot
//! know which part of the reference the pirate kept, but the common choices are few (vertical
//! 9:16, square 1:1, classic 4:3, always centred), so the reference side indexes those crops of
//! every frame next to the full frame. [`centre_crop`] makes them.

use crate::Luma;

/// Which part of a reference frame a hash was computed from.
///
/// The numeric codes of [`CropVariant::to_u8`] are stored with reference hashes; they never
/// change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CropVariant {
    /// The whole frame.
    Full,
    /// The centred 9:16 (vertical phone) crop.
    Portrait9x16,
    /// The centred 1:1 crop.
    Square,
    /// The centred 4:3 crop.
    Classic4x3,
}

impl CropVariant {
    /// Every variant, [`CropVariant::Full`] first.
    pub const ALL: [CropVariant; 4] = [
        CropVariant::Full,
        CropVariant::Portrait9x16,
        CropVariant::Square,
        CropVariant::Classic4x3,
    ];

    /// A stable lowercase name, for logs, JSON and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CropVariant::Full => "full",
            CropVariant::Portrait9x16 => "portrait_9x16",
            CropVariant::Square => "square",
            CropVariant::Classic4x3 => "classic_4x3",
        }
    }

    /// Parses [`CropVariant::as_str`]'s names back; `None` for anything else.
    pub fn from_name(name: &str) -> Option<CropVariant> {
        CropVariant::ALL.into_iter().find(|v| v.as_str() == name)
    }

    /// The stable storage code: 0 full, 1 9:16, 2 1:1, 3 4:3.
    pub fn to_u8(self) -> u8 {
        match self {
            CropVariant::Full => 0,
            CropVariant::Portrait9x16 => 1,
            CropVariant::Square => 2,
            CropVariant::Classic4x3 => 3,
        }
    }

    /// Decodes [`CropVariant::to_u8`]; `None` for an unknown code.
    pub fn from_u8(code: u8) -> Option<CropVariant> {
        CropVariant::ALL.get(usize::from(code)).copied()
    }

    /// The target width / height ratio as a fraction, `None` for [`CropVariant::Full`].
    pub fn aspect(self) -> Option<(u32, u32)> {
        match self {
            CropVariant::Full => None,
            CropVariant::Portrait9x16 => Some((9, 16)),
            CropVariant::Square => Some((1, 1)),
            CropVariant::Classic4x3 => Some((4, 3)),
        }
    }
}

impl std::fmt::Display for CropVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Crops the centred, full-height region of `img` with the aspect ratio of `variant`.
///
/// Returns `None` for [`CropVariant::Full`] and whenever cropping would not really change the
/// picture: when `img` is not wider than the target aspect, or when the crop would remove less
/// than 2 % of the width (a hash of a 1-pixel trim equals the full frame's, so indexing it would
/// only waste memory). The crop's width is rounded to the nearest pixel and its left offset
/// splits the removed columns evenly (an odd extra column goes to the right), as FFmpeg's
/// `crop` filter does by default.
pub fn centre_crop(img: &Luma, variant: CropVariant) -> Option<Luma> {
    let (num, den) = variant.aspect()?;
    let (w, h) = (u64::from(img.width()), u64::from(img.height()));
    // Rounded h * num / den, in integers so there is no float edge case at exact ratios.
    let cw = (2 * h * u64::from(num) + u64::from(den)) / (2 * u64::from(den));
    if cw == 0 || cw >= w || (w - cw) * 50 < w {
        return None;
    }
    let x = (w - cw) / 2;
    // Both values are below `img.width()`, so they fit in u32 and the crop is inside the image.
    img.crop(x as u32, 0, cw as u32, img.height()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Luma {
        let px = (0..h).flat_map(|_| (0..w).map(|x| (x % 256) as u8)).collect();
        Luma::new(w, h, px).unwrap()
    }

    #[test]
    fn portrait_crop_of_a_720p_frame_is_the_centred_405_columns() {
        let img = gradient(1280, 720);
        let c = centre_crop(&img, CropVariant::Portrait9x16).unwrap();
        assert_eq!((c.width(), c.height()), (405, 720));
        // Left offset (1280 - 405) / 2 = 437: the first pixel is column 437 of the source.
        assert_eq!(c.row(0)[0], (437 % 256) as u8);
    }

    #[test]
    fn square_and_classic_crops_have_their_aspect() {
        let img = gradient(640, 360);
        let s = centre_crop(&img, CropVariant::Square).unwrap();
        assert_eq!((s.width(), s.height()), (360, 360));
        let c = centre_crop(&img, CropVariant::Classic4x3).unwrap();
        assert_eq!((c.width(), c.height()), (480, 360));
        assert_eq!(c.row(5)[0], 80);
    }

    #[test]
    fn cropping_an_image_not_wider_than_the_target_gives_none() {
        let portrait = gradient(360, 640);
        for v in CropVariant::ALL {
            assert!(centre_crop(&portrait, v).is_none(), "{v}");
        }
        let classic = gradient(640, 480);
        assert!(centre_crop(&classic, CropVariant::Classic4x3).is_none());
        assert!(centre_crop(&classic, CropVariant::Square).is_some());
        // 1 % wider than 4:3: the trim is too small to be worth a hash.
        assert!(centre_crop(&gradient(646, 480), CropVariant::Classic4x3).is_none());
    }

    #[test]
    fn the_full_variant_never_crops() {
        assert!(centre_crop(&gradient(1280, 720), CropVariant::Full).is_none());
    }

    #[test]
    fn codes_and_names_round_trip() {
        for v in CropVariant::ALL {
            assert_eq!(CropVariant::from_u8(v.to_u8()), Some(v));
            assert_eq!(CropVariant::from_name(v.as_str()), Some(v));
        }
        assert_eq!(CropVariant::from_u8(4), None);
        assert_eq!(CropVariant::from_name("wide"), None);
    }
}
