# zerver/tornado/sharding.py, replaced by kansas (https://github.com/zulip/zulip's Tornado
# sharding, with the realm -> port map in kansas's PostgreSQL schema instead of
# /etc/zulip/sharding.json). Install the kansas_zulip package into Zulip's virtualenv first;
# see docs/zulip.md in the kansas repository.
from kansas_zulip.sharding import *  # noqa: F403
from kansas_zulip.sharding import __all__  # noqa: F401
