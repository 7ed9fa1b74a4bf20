"""The only code that talks to PostgreSQL: pool (embedded by default), migrations, and one async
function per SQL function, with SQLSTATEs mapped to error classes. Imports no aiohttp."""
