-- Where each like and favorite event was first applied: the position of its first message,
-- so that a copy of the event (the same id at another position) changes nothing, whenever it
-- comes (see `fold/sets.rs`). Written in each batch's transaction, never deleted: one
-- row per like or favorite event. A read model projected before this migration remembers no
-- position for the events it applied before; a rebuild fills them in from the log.
CREATE TABLE set_event_positions (
    artwork_id     text    NOT NULL,
    mark           text    NOT NULL CHECK (mark IN ('like', 'favorite')),
    event_id       uuid    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    message_offset bigint  NOT NULL CHECK (message_offset >= 0),
    PRIMARY KEY (artwork_id, mark, event_id)
);
