//! The multipart uploads of the command service and the image checks: the first byte picks
//! an artwork's form, an image-to-image request's form (each read as its route reads it, then
//! checked by its command's rules and the image checks) or an image alone.

#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::{Request, header};
use gallery_commands::decide::catalog;
use gallery_commands::decide::generation::{self, Admission, Bounds};
use gallery_commands::http::{artwork_upload, image_to_image_input};
use gallery_commands::{ImageLimits, check_image};

/// The boundary of the seeds' forms.
const CONTENT_TYPE: &str = "multipart/form-data; boundary=gallery-fuzz";

/// Smaller than the service's defaults, so that an input costs milliseconds; the checks are
/// the same.
const LIMITS: ImageLimits = ImageLimits {
    max_bytes: 1 << 20,
    min_side: 8,
    max_side: 1024,
    max_pixels: 1 << 20,
};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(gallery_fuzz::runtime);

fn multipart(body: &[u8]) -> Option<Multipart> {
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Body::from(body.to_vec()))
        .ok()?;
    RUNTIME.block_on(Multipart::from_request(request, &())).ok()
}

fn check(image: &[u8]) {
    if let Ok(info) = check_image(image, &LIMITS) {
        assert!(info.width <= LIMITS.max_side && info.height <= LIMITS.max_side);
        assert!(u64::from(info.width) * u64::from(info.height) <= LIMITS.max_pixels);
        let _ = info.to_image_ref();
    }
}

libfuzzer_sys::fuzz_target!(init: gallery_fuzz::init(), |data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    match route % 3 {
        0 => {
            let Some(form) = multipart(body) else {
                return;
            };
            let Ok(upload) = RUNTIME.block_on(artwork_upload(form)) else {
                return;
            };
            if catalog::check_artwork(&upload.details).is_ok() {
                check(&upload.image);
            }
        }
        1 => {
            let Some(form) = multipart(body) else {
                return;
            };
            let Ok(input) = RUNTIME.block_on(image_to_image_input(form)) else {
                return;
            };
            let checked = generation::check(
                input.mode,
                &input.params,
                input.photo.is_some(),
                &Bounds::default(),
                Admission::Normal,
            );
            if let (Ok(_), Some(photo)) = (checked, &input.photo) {
                check(photo);
            }
        }
        _ => check(body),
    }
});
