-- Private values never leave their holder in clear (issue 11, schemas/commitment.py):
-- the chain carries a salted commitment of each value without public read, and the
-- holder keeps the salt beside the value, so it can show both to whoever may read
-- it and anyone can check them against the chain. NULL for public values and for
-- the committed copies of other nodes' values (format 'commitment': data holds the
-- 32-byte commitment, type is 'idres.committed').
ALTER TABLE handle_values ADD COLUMN salt bytea CHECK (salt IS NULL OR length(salt) = 16);
