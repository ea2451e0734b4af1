//! Exhibitions and their artworks: curators build them, in draft until published; a closed
//! exhibition takes no more changes.

use gallery_schemas::{
    ArtworkAdded, ArtworkId, ArtworkRemoved, Description, Event, ExhibitionClosed,
    ExhibitionCreated, ExhibitionPublished, ExhibitionStatus, ImageRef, PersonName, StyleName,
    Title, UserId,
};
use uuid::Uuid;

use super::{Refusal, in_range};
use crate::auth::Principal;

/// What the write side knows about an exhibition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExhibitionState {
    pub curator: UserId,
    pub status: ExhibitionStatus,
    /// Artworks currently in it.
    pub artworks: i64,
}

/// A new exhibition, as asked for.
#[derive(Debug, Clone)]
pub struct NewExhibition {
    pub title: String,
    pub description: String,
    pub opens_at: i64,
    pub closes_at: i64,
}

/// A new artwork's details, as asked for (its image is stored separately).
#[derive(Debug, Clone)]
pub struct NewArtwork {
    pub title: String,
    pub artist: String,
    pub year: Option<i32>,
    pub style: Option<String>,
    pub description: String,
}

/// Earliest and latest year an artwork may carry.
pub const YEARS: (i64, i64) = (-40_000, 2_200);

fn require_curator(who: &Principal) -> Result<(), Refusal> {
    if who.is_curator() {
        Ok(())
    } else {
        Err(Refusal::Forbidden {
            reason: "only curators build exhibitions",
        })
    }
}

/// Checks `who` may change the exhibition: it exists, they curate it (or are an admin), and it
/// is not closed. Cheap; done before anything is stored.
pub fn authorize_edit<'s>(
    who: &Principal,
    state: Option<&'s ExhibitionState>,
) -> Result<&'s ExhibitionState, Refusal> {
    require_curator(who)?;
    let state = state.ok_or(Refusal::NotFound { what: "exhibition" })?;
    if state.curator != who.user && !who.is_admin() {
        return Err(Refusal::Forbidden {
            reason: "only the exhibition's curator or an admin may change it",
        });
    }
    if state.status == ExhibitionStatus::Closed {
        return Err(Refusal::Conflict {
            reason: "the exhibition is closed",
        });
    }
    Ok(state)
}

pub fn create_exhibition(
    who: &Principal,
    input: &NewExhibition,
    exhibition_id: Uuid,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    require_curator(who)?;
    let title = Title::parse(input.title.clone()).map_err(Refusal::text("title"))?;
    let description =
        Description::parse(input.description.clone()).map_err(Refusal::text("description"))?;
    if input.closes_at <= input.opens_at {
        return Err(Refusal::Rule {
            field: "closesAt",
            rule: "must be after opensAt",
        });
    }
    if input.closes_at <= now {
        return Err(Refusal::Rule {
            field: "closesAt",
            rule: "must be in the future",
        });
    }
    Ok(ExhibitionCreated {
        event_id,
        exhibition_id,
        curator_id: who.user.clone(),
        title,
        description,
        opens_at: input.opens_at,
        closes_at: input.closes_at,
        occurred_at: now,
    }
    .into())
}

/// Checks an artwork's details before its image is stored.
pub fn check_artwork(input: &NewArtwork) -> Result<(), Refusal> {
    Title::parse(input.title.clone()).map_err(Refusal::text("title"))?;
    PersonName::parse(input.artist.clone()).map_err(Refusal::text("artist"))?;
    Description::parse(input.description.clone()).map_err(Refusal::text("description"))?;
    if let Some(style) = &input.style {
        StyleName::parse(style.clone()).map_err(Refusal::text("style"))?;
    }
    if let Some(year) = input.year {
        in_range("year", i64::from(year), YEARS.0, YEARS.1)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn add_artwork(
    who: &Principal,
    state: Option<&ExhibitionState>,
    exhibition_id: Uuid,
    input: &NewArtwork,
    image: ImageRef,
    artwork_id: ArtworkId,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    authorize_edit(who, state)?;
    check_artwork(input)?;
    Ok(ArtworkAdded {
        event_id,
        exhibition_id,
        artwork_id,
        title: Title::parse(input.title.clone()).map_err(Refusal::text("title"))?,
        artist: PersonName::parse(input.artist.clone()).map_err(Refusal::text("artist"))?,
        year: input.year,
        style: input
            .style
            .clone()
            .map(StyleName::parse)
            .transpose()
            .map_err(Refusal::text("style"))?,
        description: Description::parse(input.description.clone())
            .map_err(Refusal::text("description"))?,
        image,
        added_by: who.user.clone(),
        occurred_at: now,
    }
    .into())
}

/// `artwork_in` is the exhibition the artwork currently belongs to (None when unknown or
/// removed).
pub fn remove_artwork(
    who: &Principal,
    state: Option<&ExhibitionState>,
    exhibition_id: Uuid,
    artwork_id: &ArtworkId,
    artwork_in: Option<Uuid>,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    authorize_edit(who, state)?;
    if artwork_in != Some(exhibition_id) {
        return Err(Refusal::NotFound { what: "artwork" });
    }
    Ok(ArtworkRemoved {
        event_id,
        exhibition_id,
        artwork_id: artwork_id.clone(),
        removed_by: who.user.clone(),
        occurred_at: now,
    }
    .into())
}

pub fn publish(
    who: &Principal,
    state: Option<&ExhibitionState>,
    exhibition_id: Uuid,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    let state = authorize_edit(who, state)?;
    if state.status == ExhibitionStatus::Published {
        return Err(Refusal::Conflict {
            reason: "the exhibition is already published",
        });
    }
    if state.artworks == 0 {
        return Err(Refusal::Conflict {
            reason: "an exhibition needs at least one artwork to be published",
        });
    }
    Ok(ExhibitionPublished {
        event_id,
        exhibition_id,
        published_by: who.user.clone(),
        occurred_at: now,
    }
    .into())
}

pub fn close(
    who: &Principal,
    state: Option<&ExhibitionState>,
    exhibition_id: Uuid,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    authorize_edit(who, state)?;
    Ok(ExhibitionClosed {
        event_id,
        exhibition_id,
        closed_by: who.user.clone(),
        occurred_at: now,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gallery_schemas::Role;

    fn p(user: &str, role: Role) -> Principal {
        Principal::new(
            UserId::parse(user).unwrap_or_else(|e| unreachable!("{e}")),
            role,
        )
    }

    fn exhibition() -> NewExhibition {
        NewExhibition {
            title: "Light".into(),
            description: String::new(),
            opens_at: 100,
            closes_at: 200,
        }
    }

    fn state(status: ExhibitionStatus, artworks: i64) -> ExhibitionState {
        ExhibitionState {
            curator: UserId::parse("cur").unwrap_or_else(|e| unreachable!("{e}")),
            status,
            artworks,
        }
    }

    #[test]
    fn a_visitor_cannot_create_an_exhibition() {
        let r = create_exhibition(
            &p("v", Role::Visitor),
            &exhibition(),
            Uuid::nil(),
            Uuid::nil(),
            0,
        );
        assert!(matches!(r, Err(Refusal::Forbidden { .. })));
    }

    #[test]
    fn closing_must_follow_opening_and_lie_ahead() {
        let cur = p("cur", Role::Curator);
        let mut e = exhibition();
        e.closes_at = e.opens_at;
        assert!(matches!(
            create_exhibition(&cur, &e, Uuid::nil(), Uuid::nil(), 0),
            Err(Refusal::Rule {
                field: "closesAt",
                ..
            })
        ));
        assert!(matches!(
            create_exhibition(&cur, &exhibition(), Uuid::nil(), Uuid::nil(), 300),
            Err(Refusal::Rule {
                field: "closesAt",
                ..
            })
        ));
        assert!(create_exhibition(&cur, &exhibition(), Uuid::nil(), Uuid::nil(), 0).is_ok());
    }

    #[test]
    fn only_its_curator_or_an_admin_may_edit_and_never_when_closed() {
        let draft = state(ExhibitionStatus::Draft, 0);
        assert!(authorize_edit(&p("cur", Role::Curator), Some(&draft)).is_ok());
        assert!(authorize_edit(&p("boss", Role::Admin), Some(&draft)).is_ok());
        assert!(matches!(
            authorize_edit(&p("other", Role::Curator), Some(&draft)),
            Err(Refusal::Forbidden { .. })
        ));
        assert!(matches!(
            authorize_edit(&p("cur", Role::Curator), None),
            Err(Refusal::NotFound { .. })
        ));
        assert!(matches!(
            authorize_edit(
                &p("cur", Role::Curator),
                Some(&state(ExhibitionStatus::Closed, 1))
            ),
            Err(Refusal::Conflict { .. })
        ));
    }

    #[test]
    fn publishing_needs_an_artwork_and_happens_once() {
        let cur = p("cur", Role::Curator);
        let id = Uuid::nil();
        assert!(matches!(
            publish(&cur, Some(&state(ExhibitionStatus::Draft, 0)), id, id, 0),
            Err(Refusal::Conflict { .. })
        ));
        assert!(publish(&cur, Some(&state(ExhibitionStatus::Draft, 1)), id, id, 0).is_ok());
        assert!(matches!(
            publish(
                &cur,
                Some(&state(ExhibitionStatus::Published, 1)),
                id,
                id,
                0
            ),
            Err(Refusal::Conflict { .. })
        ));
    }

    #[test]
    fn an_artwork_is_removed_only_from_its_own_exhibition() {
        let cur = p("cur", Role::Curator);
        let (here, there) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let art = ArtworkId::parse("a1").unwrap_or_else(|e| unreachable!("{e}"));
        let s = state(ExhibitionStatus::Published, 1);
        assert!(remove_artwork(&cur, Some(&s), here, &art, Some(here), Uuid::nil(), 0).is_ok());
        assert!(matches!(
            remove_artwork(&cur, Some(&s), here, &art, Some(there), Uuid::nil(), 0),
            Err(Refusal::NotFound { what: "artwork" })
        ));
    }

    #[test]
    fn artwork_details_are_checked() {
        let mut art = NewArtwork {
            title: "Sunflowers".into(),
            artist: "Vincent van Gogh".into(),
            year: Some(1888),
            style: None,
            description: String::new(),
        };
        assert!(check_artwork(&art).is_ok());
        art.year = Some(3000);
        assert!(matches!(
            check_artwork(&art),
            Err(Refusal::OutOfRange { field: "year", .. })
        ));
        art.year = None;
        art.artist = String::new();
        assert!(matches!(
            check_artwork(&art),
            Err(Refusal::Text {
                field: "artist",
                ..
            })
        ));
    }
}
