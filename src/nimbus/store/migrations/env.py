"""Alembic environment: runs on the connection nimbus hands over (see Database.migrate)."""

from alembic import context
from sqlalchemy import Connection, create_engine

from nimbus.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=conn.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic` CLI use by developers: -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///.nimbus/nimbus.db")
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()
