-- The hash of the policy set that allowed each writ (see src/policy/source.rs), and of the set
-- that admitted each approval request (its elevated writ records that one). NULL for what was
-- recorded before policy sets were hashed.
ALTER TABLE writs ADD COLUMN policy_hash TEXT;
ALTER TABLE approval_requests ADD COLUMN policy_hash TEXT;
