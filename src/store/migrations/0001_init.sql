-- kansas 0001: shard weights, realm assignments, regex rules, and change notifications.
-- Everything lives in the `kansas` schema so it can share Zulip's database.

CREATE TABLE kansas.shard_weights (
    shard text PRIMARY KEY CHECK (length(shard) BETWEEN 1 AND 64),
    weight double precision NOT NULL
        CHECK (weight >= 0 AND weight < 'Infinity'::float8 AND weight <> 'NaN'::float8),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE kansas.realm_assignments (
    realm text PRIMARY KEY CHECK (realm = lower(realm) AND length(realm) BETWEEN 1 AND 253),
    shard text NOT NULL CHECK (length(shard) BETWEEN 1 AND 64),
    updated_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL DEFAULT current_user,
    note text CHECK (length(note) <= 1000)
);
CREATE INDEX realm_assignments_shard ON kansas.realm_assignments (shard);

CREATE TABLE kansas.realm_rules (
    priority integer PRIMARY KEY,
    pattern text NOT NULL CHECK (length(pattern) BETWEEN 1 AND 1000),
    shard text NOT NULL CHECK (length(shard) BETWEEN 1 AND 64),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change is announced on channel `kansas_routing` with the changed row, so a running
-- kansas applies it within a second without re-reading everything.
CREATE FUNCTION kansas.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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

CREATE TRIGGER shard_weights_notify AFTER INSERT OR UPDATE OR DELETE ON kansas.shard_weights
    FOR EACH ROW EXECUTE FUNCTION kansas.notify_change();
CREATE TRIGGER shard_weights_truncate AFTER TRUNCATE ON kansas.shard_weights
    FOR EACH STATEMENT EXECUTE FUNCTION kansas.notify_change();
CREATE TRIGGER realm_assignments_notify AFTER INSERT OR UPDATE OR DELETE ON kansas.realm_assignments
    FOR EACH ROW EXECUTE FUNCTION kansas.notify_change();
CREATE TRIGGER realm_assignments_truncate AFTER TRUNCATE ON kansas.realm_assignments
    FOR EACH STATEMENT EXECUTE FUNCTION kansas.notify_change();
CREATE TRIGGER realm_rules_notify AFTER INSERT OR UPDATE OR DELETE ON kansas.realm_rules
    FOR EACH ROW EXECUTE FUNCTION kansas.notify_change();
CREATE TRIGGER realm_rules_truncate AFTER TRUNCATE ON kansas.realm_rules
    FOR EACH STATEMENT EXECUTE FUNCTION kansas.notify_change();
