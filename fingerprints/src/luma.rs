//! [`Luma`]: the greyscale image every algorithm of this crate consumes.

use crate::{Error, ErrorKind};

/// An 8-bit greyscale (luma) image, row-major, `width * height` bytes, no padding.
///
/// Invariant: `pixels.len() == width * height` and both dimensions are non-zero.
#[derive(Clone, PartialEq, Eq)]
pub struct Luma {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Luma {
    /// Wraps a pixel buffer.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if a dimension is zero or the buffer length is not
    /// `width * height`.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, Error> {
        if width == 0 || height == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "an image needs non-zero dimensions"));
        }
        if pixels.len() as u64 != u64::from(width) * u64::from(height) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}x{} luma needs {} bytes, got {}",
                    width,
                    height,
                    u64::from(width) * u64::from(height),
                    pixels.len()
                ),
            ));
        }
        Ok(Self { width, height, pixels })
    }

    /// Converts interleaved 8-bit RGB to luma with PDQ's weights (0.299 R + 0.587 G + 0.114 B).
    ///
    /// # Errors
    /// As [`Luma::new`], with `rgb.len()` checked against `3 * width * height`.
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Self, Error> {
        if rgb.len() as u64 != 3 * u64::from(width) * u64::from(height) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "RGB buffer length is not 3 * width * height",
            ));
        }
        let pixels = rgb
            .chunks_exact(3)
            .map(|p| {
                let y = 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                y.round().clamp(0.0, 255.0) as u8
            })
            .collect();
        Self::new(width, height, pixels)
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The row-major pixels.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// One row of pixels.
    pub fn row(&self, y: u32) -> &[u8] {
        let w = self.width as usize;
        &self.pixels[y as usize * w..(y as usize + 1) * w]
    }

    /// Copies the rectangle `(x, y, w, h)`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the rectangle is empty or leaves the image.
    pub fn crop(&self, x: u32, y: u32, w: u32, h: u32) -> Result<Luma, Error> {
        if w == 0
            || h == 0
            || x.checked_add(w).is_none_or(|r| r > self.width)
            || y.checked_add(h).is_none_or(|b| b > self.height)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("crop {w}x{h}+{x}+{y} leaves the {}x{} image", self.width, self.height),
            ));
        }
        let mut out = Vec::with_capacity(w as usize * h as usize);
        for row in y..y + h {
            let r = self.row(row);
            out.extend_from_slice(&r[x as usize..(x + w) as usize]);
        }
        Luma::new(w, h, out)
    }

    /// Mirrors the image left to right.
    pub fn flip_horizontal(&self) -> Luma {
        let mut out = self.pixels.clone();
        for row in out.chunks_exact_mut(self.width as usize) {
            row.reverse();
        }
        Luma { width: self.width, height: self.height, pixels: out }
    }
}

impl std::fmt::Debug for Luma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Luma({}x{})", self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_copies_the_rectangle() {
        let img = Luma::new(4, 3, (0..12).collect()).unwrap();
        let c = img.crop(1, 1, 2, 2).unwrap();
        assert_eq!(c.pixels(), &[5, 6, 9, 10]);
        assert!(img.crop(3, 0, 2, 1).is_err());
        assert!(img.crop(0, 0, 0, 1).is_err());
    }

    #[test]
    fn buffer_length_is_checked() {
        assert_eq!(Luma::new(2, 2, vec![0; 3]).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert!(Luma::new(0, 2, vec![]).is_err());
    }

    #[test]
    fn flip_reverses_rows() {
        let img = Luma::new(3, 1, vec![1, 2, 3]).unwrap();
        assert_eq!(img.flip_horizontal().pixels(), &[3, 2, 1]);
    }
}
