-- note_versions counts the committed writes of each note, for the realtime
-- feature (see realtime/realtime.go): a trigger bumps a note's version in
-- the transaction of every insert, update and delete of the note. Writes
-- of one note hold its row's lock until COMMIT, and then this row's, so a
-- note's versions grow in the order its writes commit. The row of a deleted
-- note stays, with the version of its delete (a note id is never reused).
--
-- Expand only: a new table, and a trigger that instances of the previous
-- version fire too without knowing it.

-- +goose Up
CREATE TABLE note_versions (
    note_id bigint PRIMARY KEY,
    version bigint NOT NULL
);

INSERT INTO note_versions (note_id, version) SELECT id, 1 FROM notes;

-- +goose StatementBegin
CREATE FUNCTION bump_note_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO note_versions (note_id, version)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END, 1)
    ON CONFLICT (note_id) DO UPDATE SET version = note_versions.version + 1;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER notes_version AFTER INSERT OR UPDATE OR DELETE ON notes
    FOR EACH ROW EXECUTE FUNCTION bump_note_version();

-- +goose Down
DROP TRIGGER notes_version ON notes;
DROP FUNCTION bump_note_version();
DROP TABLE note_versions;
