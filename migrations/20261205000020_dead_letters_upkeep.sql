-- Upkeep of dead letters by webhook: retention deletes by age, and `dead-letters replay` looks a
-- letter up by its webhook and event (to mark it redriven, or to skip one already redriven).
CREATE INDEX IF NOT EXISTS dead_letters_by_age ON dead_letters (created_at);
CREATE INDEX IF NOT EXISTS dead_letters_by_event ON dead_letters (webhook_id, event_id);
