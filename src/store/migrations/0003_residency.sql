-- kansas 0003: one routing truth for Django, Tornado and kansas (docs/residency.md).
--  * kansas.shards: the shard registry (name, Tornado port, weight); formerly shard_weights.
--    Only rows with a port are shards; `kansas db migrate` registers the config file's shards.
--  * user-split realms: an assignment or rule may name several shards (split_shards).
--  * kansas.drain_windows: for each routing change that drains, the routing state before and
--    after it and when the window closes; a realm is resident on its shard before the change
--    until then.
--  * the per-assignment move_policy (0002) is replaced by drain windows.

ALTER TABLE kansas.shard_weights RENAME TO shards;
ALTER TABLE kansas.shards RENAME COLUMN shard TO name;
ALTER TABLE kansas.shards ADD COLUMN port integer UNIQUE CHECK (port BETWEEN 1 AND 65535);
ALTER TRIGGER shard_weights_notify ON kansas.shards RENAME TO shards_notify;
ALTER TRIGGER shard_weights_truncate ON kansas.shards RENAME TO shards_truncate;

ALTER TABLE kansas.realm_assignments DROP COLUMN move_policy;
ALTER TABLE kansas.realm_assignments ADD COLUMN split_shards text[]
    CHECK (split_shards IS NULL
           OR (cardinality(split_shards) BETWEEN 2 AND 64 AND split_shards[1] = shard
               AND array_position(split_shards, NULL) IS NULL));
ALTER TABLE kansas.realm_rules ADD COLUMN split_shards text[]
    CHECK (split_shards IS NULL
           OR (cardinality(split_shards) BETWEEN 2 AND 64 AND split_shards[1] = shard
               AND array_position(split_shards, NULL) IS NULL));

CREATE TABLE kansas.drain_windows (
    id bigserial PRIMARY KEY,
    opened_at timestamptz NOT NULL DEFAULT now(),
    until timestamptz NOT NULL,
    change text NOT NULL CHECK (length(change) BETWEEN 1 AND 2000),
    changed_by text NOT NULL DEFAULT current_user,
    before jsonb NOT NULL,
    after jsonb NOT NULL,
    CHECK (until >= opened_at)
);
CREATE INDEX drain_windows_until ON kansas.drain_windows (until);

-- A window's states do not fit in a notification (8000 bytes): announce its id only.
CREATE FUNCTION kansas.notify_window() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('kansas.notify', true) = 'commit' THEN
        RETURN NULL;  -- see kansas.notify_change below
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('kansas_routing',
            json_build_object('table', TG_TABLE_NAME, 'op', TG_OP)::text);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('kansas_routing',
            json_build_object('table', TG_TABLE_NAME, 'op', TG_OP, 'id', OLD.id)::text);
    ELSE
        PERFORM pg_notify('kansas_routing',
            json_build_object('table', TG_TABLE_NAME, 'op', TG_OP, 'id', NEW.id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER drain_windows_notify AFTER INSERT OR UPDATE OR DELETE ON kansas.drain_windows
    FOR EACH ROW EXECUTE FUNCTION kansas.notify_window();
CREATE TRIGGER drain_windows_truncate AFTER TRUNCATE ON kansas.drain_windows
    FOR EACH STATEMENT EXECUTE FUNCTION kansas.notify_window();

-- A routing change made by kansas's commands writes several rows and a drain window in one
-- transaction, and a reader must never install part of it: a realm moved but not yet draining
-- would look gone from its old shard. Such a transaction sets `kansas.notify` to 'commit'
-- (transaction-local): the row triggers stay quiet and the change sends one notification,
-- {"table": "*", "op": "COMMIT"}, on which every reader loads everything.
CREATE OR REPLACE FUNCTION kansas.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('kansas.notify', true) = 'commit' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('kansas_routing',
            json_build_object('table', TG_TABLE_NAME, 'op', TG_OP)::text);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('kansas_routing',
            json_build_object('table', TG_TABLE_NAME, 'op', TG_OP, 'old', row_to_json(OLD))::text);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pg_notify('kansas_routing',
            json_build_object('table', TG_TABLE_NAME, 'op', TG_OP, 'old', row_to_json(OLD),
                              'new', row_to_json(NEW))::text);
    ELSE
        PERFORM pg_notify('kansas_routing',
            json_build_object('table', TG_TABLE_NAME, 'op', TG_OP, 'new', row_to_json(NEW))::text);
    END IF;
    RETURN NULL;
END
$$;
