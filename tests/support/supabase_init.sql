-- One Supabase-like database, written from Supabase's public init scripts and migrations (supabase/postgres:
-- migrations/db/init-scripts/*.sql; the pgrst watch triggers as updated in
-- migrations/db/migrations/20260923021047_update_pgrst_watch_triggers.sql) and its 2026 change to default
-- privileges (new tables in public are no longer granted to the API roles). Run in a new database as a
-- superuser (event triggers need one), after supabase_roles.sql.

-- Extensions live in their own schema; PostgREST finds them through db-extra-search-path = public,extensions.
create schema if not exists extensions;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;

grant usage on schema public to postgres, anon, authenticated, service_role;
grant usage on schema extensions to postgres, anon, authenticated, service_role;

-- Default privileges as the init scripts set them (for objects the current role or supabase_admin creates) ...
alter default privileges in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public grant all
    on sequences to postgres, anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public grant all
    on tables to postgres, anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public grant all
    on functions to postgres, anon, authenticated, service_role;

-- ... minus tables and sequences, since 2026 ("Default privileges for new entities" off): a new table in
-- public answers 42501 to the API until someone GRANTs it.
alter default privileges in schema public revoke select, insert, update, delete on tables
    from anon, authenticated, service_role;
alter default privileges in schema public revoke usage, select on sequences from anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public revoke select, insert, update, delete on tables
    from anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public revoke usage, select on sequences
    from anon, authenticated, service_role;

-- Storage: the schema the Storage API owns; its tables reach the API roles through supabase_storage_admin's
-- default privileges. RLS is on, so the API sees only the rows a policy lets through.
create schema if not exists storage authorization supabase_admin;
grant usage on schema storage to postgres, anon, authenticated, service_role;
grant all on schema storage to supabase_storage_admin with grant option;
alter default privileges for role supabase_storage_admin in schema storage grant all
    on tables to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_storage_admin in schema storage grant all
    on functions to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_storage_admin in schema storage grant all
    on sequences to postgres, anon, authenticated, service_role;

set role supabase_storage_admin;
create table storage.buckets (
    id text primary key,
    name text not null unique,
    owner uuid,
    public boolean default false,
    created_at timestamptz default now(),
    updated_at timestamptz default now()
);
create table storage.objects (
    id uuid primary key default gen_random_uuid(),
    bucket_id text references storage.buckets (id),
    name text,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    last_accessed_at timestamptz default now(),
    metadata jsonb
);
alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
reset role;

-- graphql_public: the schema Supabase exposes for /graphql/v1. pg_graphql is not installed here, so its one
-- function answers the error Supabase's placeholder gives when the extension is missing.
create schema if not exists graphql_public;
grant usage on schema graphql_public to postgres, anon, authenticated, service_role;
create function graphql_public.graphql(
    "operationName" text default null, query text default null, variables jsonb default null,
    extensions jsonb default null
) returns jsonb language sql as
$$ select jsonb_build_object('errors', jsonb_build_array(jsonb_build_object('message', 'pg_graphql is not enabled'))) $$;
grant execute on function graphql_public.graphql(text, text, jsonb, jsonb) to postgres, anon, authenticated, service_role;

-- The schema cache reloads itself on DDL: these event triggers NOTIFY PostgREST's default channel, except for
-- temporary objects and Supabase's own schemas. They do not fire under session_replication_role = replica.
create function extensions.pgrst_ddl_watch() returns event_trigger language plpgsql as $$
declare
  cmd record;
begin
  for cmd in select * from pg_event_trigger_ddl_commands() loop
    if cmd.command_tag in (
        'CREATE SCHEMA', 'ALTER SCHEMA', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
        'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'CREATE VIEW', 'ALTER VIEW', 'CREATE MATERIALIZED VIEW',
        'ALTER MATERIALIZED VIEW', 'CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE TYPE', 'ALTER TYPE',
        'CREATE RULE', 'COMMENT')
      and coalesce(cmd.schema_name, '') not in ('pg_temp', 'auth', 'realtime', '_realtime', 'storage')
      or (cmd.command_tag = 'CREATE TRIGGER' and cmd.object_identity not like '% pg\_temp.%')
    then
      notify pgrst, 'reload schema';
    end if;
  end loop;
end $$;

create function extensions.pgrst_drop_watch() returns event_trigger language plpgsql as $$
declare
  obj record;
begin
  for obj in select * from pg_event_trigger_dropped_objects() loop
    if obj.object_type in ('schema', 'table', 'foreign table', 'view', 'materialized view', 'function', 'type',
                           'rule')
      and obj.is_temporary is false
      and coalesce(obj.schema_name, '') not in ('auth', 'realtime', '_realtime', 'storage')
      or (obj.object_type = 'trigger' and obj.object_identity not like '% pg\_temp.%')
    then
      notify pgrst, 'reload schema';
    end if;
  end loop;
end $$;

create event trigger pgrst_ddl_watch on ddl_command_end execute function extensions.pgrst_ddl_watch();
create event trigger pgrst_drop_watch on sql_drop execute function extensions.pgrst_drop_watch();
alter event trigger pgrst_ddl_watch owner to supabase_admin;
alter event trigger pgrst_drop_watch owner to supabase_admin;
