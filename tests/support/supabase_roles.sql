-- The cluster-wide part of a Supabase-like database, written from Supabase's public init scripts
-- (supabase/postgres: migrations/db/init-scripts/00000000000000-initial-schema.sql, -00000000000002-storage-schema.sql,
-- migrations/db/migrations/20221028101028_set_authenticator_timeout.sql). Run once per cluster, as superuser.
-- Roles only; what lives in a database is in supabase_init.sql. Passwords are set by tests/support/pgstack.py.

-- The platform's own superuser (on Supabase it bootstraps the cluster and owns the event triggers).
create role supabase_admin login superuser createdb createrole replication bypassrls;

-- The API roles PostgREST switches to, and the role it logs in as.
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;

create role authenticator login noinherit;
grant anon to authenticator;
grant authenticated to authenticator;
grant service_role to authenticator;
grant supabase_admin to authenticator;

-- Storage API's owner role: the default privileges in supabase_init.sql give its tables to the API roles.
create role supabase_storage_admin login noinherit createrole noreplication;

-- Short statement timeouts for the API roles; 8 s for the schema cache queries PostgREST runs as authenticator.
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
