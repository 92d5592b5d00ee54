-- Lock the user_* tables against writers until this transaction ends (readers are not blocked): a writer
-- still in flight is waited for, so every reference committed by then is visible to the statement after
-- this one, and none is added before the transaction commits. Binds no parameters.
LOCK TABLE user_troops, user_pets, user_artifacts IN SHARE MODE
