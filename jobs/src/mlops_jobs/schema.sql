-- The job queue of mlops.platform, version 1. Applied by mlops_jobs.queue.migrate as the
-- database owner; every statement can run again without effect.

CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per runner host. Its capacity is what the agent reports when it starts; what is
-- free is that minus the requests of the jobs it holds (computed, never stored).
CREATE TABLE IF NOT EXISTS runners (
    name text PRIMARY KEY,
    gpu_ids text[] NOT NULL DEFAULT '{}',
    cpus integer NOT NULL CHECK (cpus > 0),
    memory_mb integer NOT NULL CHECK (memory_mb > 0),
    services text[] NOT NULL DEFAULT '{}',
    draining boolean NOT NULL DEFAULT false,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS jobs (
    id bigserial PRIMARY KEY,
    service text NOT NULL,
    submitted_by text NOT NULL,
    run_id text,
    repository text NOT NULL,
    commit text NOT NULL,
    command text NOT NULL,
    gpus integer NOT NULL DEFAULT 0 CHECK (gpus >= 0),
    cpus integer NOT NULL DEFAULT 1 CHECK (cpus > 0),
    memory_mb integer NOT NULL DEFAULT 1024 CHECK (memory_mb > 0),
    timeout_s integer CHECK (timeout_s > 0),
    inputs jsonb NOT NULL DEFAULT '[]',
    parent_run_id text,
    env jsonb NOT NULL DEFAULT '{}',
    image text,
    -- The MLflow experiment of the job's run (created when missing).
    experiment text NOT NULL DEFAULT 'jobs',
    -- Attempts after a non-zero exit or a lost runner, only when the job asks for them.
    retries integer NOT NULL DEFAULT 0 CHECK (retries >= 0),
    attempt integer NOT NULL DEFAULT 1,
    -- Failures of the platform before the command started (a runner that could not stage
    -- the inputs, a lease that ran out while claimed) put the job back in the queue this
    -- many times, whatever the job asks.
    infra_failures integer NOT NULL DEFAULT 0,
    copied_from bigint,
    status text NOT NULL DEFAULT 'QUEUED' CHECK (status IN (
        'QUEUED', 'CLAIMED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT', 'LOST')),
    runner text,
    gpu_ids text[] NOT NULL DEFAULT '{}',
    lease_until timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    exit_code integer,
    reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz
);

-- Version 2: the credential of a held job, the sha256 (hex) of a secret its runner makes
-- just before the command starts and gives the command as user job-<id>. The gateway
-- accepts it only while the job is CLAIMED or RUNNING on its own service; it is cleared
-- whenever the job leaves its runner.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS credential_sha256 text;

CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (id) WHERE status = 'QUEUED';
CREATE INDEX IF NOT EXISTS jobs_held ON jobs (runner) WHERE status IN ('CLAIMED', 'RUNNING');
CREATE INDEX IF NOT EXISTS jobs_service ON jobs (service, id);

-- Cancelling is one column for the submission side: a queued job that is asked to stop
-- is settled here, a held one by its runner.
CREATE OR REPLACE FUNCTION jobs_cancel_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cancel_requested AND NOT OLD.cancel_requested AND OLD.status = 'QUEUED' THEN
        NEW.status := 'CANCELLED';
        NEW.reason := 'cancelled before it started';
        NEW.finished_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER jobs_cancel_queued BEFORE UPDATE OF cancel_requested ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_cancel_queued();

INSERT INTO schema_version (version) VALUES (1), (2) ON CONFLICT DO NOTHING;
