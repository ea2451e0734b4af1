//! Every JSON body the command service takes: read as its route reads it (axum's `Json`),
//! then checked by the rules its command applies before anything is stored. The first byte
//! picks the route. What a command accepts must encode as its event.

#![no_main]

use axum::Json;
use gallery_commands::accounts::http::{LoginBody, RefreshBody, RegisterBody, RoleBody};
use gallery_commands::accounts::{RefreshToken, Registration};
use gallery_commands::decide::generation::{self, Admission, Bounds};
use gallery_commands::decide::{catalog, interactions};
use gallery_commands::http::{CommentBody, ExhibitionBody, TextToImageBody};
use gallery_commands::{GenerationInput, Principal};
use gallery_schemas::{ArtworkId, Event, Role, UserId, frame};
use uuid::Uuid;

/// 2023-11-14T22:13:20Z: "now" for the rules that need a clock.
const NOW: i64 = 1_700_000_000_000;

fn curator() -> Principal {
    let user = UserId::parse("ada").unwrap_or_else(|e| panic!("{e}"));
    Principal::new(user, Role::Curator)
}

fn encodes(event: &Event) {
    if let Err(e) = frame(1, event) {
        panic!("an accepted command's event does not encode: {e}: {event:?}");
    }
}

libfuzzer_sys::fuzz_target!(init: gallery_fuzz::init(), |data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let who = curator();
    match route % 7 {
        0 => {
            let Ok(Json(input)) = Json::<CommentBody>::from_bytes(body) else {
                return;
            };
            let artwork = ArtworkId::parse("sunflowers").unwrap_or_else(|e| panic!("{e}"));
            let posted = interactions::post_comment(
                &who.user,
                &artwork,
                input.body(),
                Uuid::nil(),
                Uuid::nil(),
                NOW,
            );
            if let Ok(event) = posted {
                encodes(&event);
            }
        }
        1 => {
            let Ok(Json(input)) = Json::<ExhibitionBody>::from_bytes(body) else {
                return;
            };
            let input = catalog::NewExhibition::from(input);
            let created =
                catalog::create_exhibition(&who, &input, Uuid::nil(), Uuid::nil(), NOW);
            if let Ok(event) = created {
                encodes(&event);
            }
        }
        2 => {
            let Ok(Json(input)) = Json::<TextToImageBody>::from_bytes(body) else {
                return;
            };
            let input = GenerationInput::from(input);
            for admission in [
                Admission::Normal,
                Admission::Degraded {
                    max_steps: 4,
                    max_side: 256,
                },
            ] {
                let bounds = Bounds::default();
                let Ok(checked) = generation::check(
                    input.mode,
                    &input.params,
                    input.photo.is_some(),
                    &bounds,
                    admission,
                ) else {
                    continue;
                };
                let request_id = input.request_id.unwrap_or(Uuid::nil());
                let event =
                    generation::request(&who, checked, None, request_id, 7, Uuid::nil(), NOW);
                encodes(&event);
            }
        }
        3 => {
            if let Ok(Json(input)) = Json::<RegisterBody>::from_bytes(body) {
                let _ = Registration::try_from(input);
            }
        }
        4 => {
            let _ = Json::<LoginBody>::from_bytes(body);
        }
        5 => {
            if let Ok(Json(input)) = Json::<RefreshBody>::from_bytes(body) {
                let _ = RefreshToken::from(input).digest();
            }
        }
        _ => {
            if let Ok(Json(input)) = Json::<RoleBody>::from_bytes(body) {
                let _ = Role::try_from(input);
            }
        }
    }
});
