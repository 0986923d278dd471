"""The plugin system: hookspecs (:mod:`dermbench.hookspecs`), the manager that loads plugins,
the registries they fill, and the contract (contexts and factory signatures) of every kind."""

from dermbench.plugins.manager import (
    GROUP,
    PluginInfo,
    Plugins,
    get_plugins,
    load_plugins,
    new_plugin_manager,
)

__all__ = ["GROUP", "PluginInfo", "Plugins", "get_plugins", "load_plugins", "new_plugin_manager"]
