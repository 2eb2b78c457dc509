"""The base layer of oneroof, the parts it runs against real servers: connections and errors, the
embedded PostgreSQL, the golden database builder, captures of production, the clone harness and
the database marks. It imports nothing else of oneroof.
"""
