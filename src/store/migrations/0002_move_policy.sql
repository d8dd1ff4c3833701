-- kansas 0002: a per-assignment realm-move policy ('reload' or 'drain'); NULL means the
-- configuration's default.
ALTER TABLE kansas.realm_assignments
    ADD COLUMN move_policy text CHECK (move_policy IN ('reload', 'drain'));
