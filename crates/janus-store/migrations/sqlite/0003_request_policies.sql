-- k8s-janus schema, version 3 (SQLite): request history records how a request was approved under the
-- approval policies (issue 15). Every column is nullable or has a default, so rows written by earlier
-- versions stay valid and read as "no policy known, nothing special".

-- The policy that governed the request (`default` when none matched); NULL before evaluation.
ALTER TABLE requests ADD COLUMN policy TEXT;
-- Everyone who wrote an approval, in order, as a JSON array of emails.
ALTER TABLE requests ADD COLUMN approvals TEXT NOT NULL DEFAULT '[]';
ALTER TABLE requests ADD COLUMN auto_approved BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE requests ADD COLUMN break_glass BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE requests ADD COLUMN break_glass_reviewed_by TEXT;
-- `spec.startAt` of a scheduled request, microseconds since the epoch.
ALTER TABLE requests ADD COLUMN start_us INTEGER;
