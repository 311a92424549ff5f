"""www.foobar.com on AWS: load the settings, build the site, export what operators need."""

import pulumi
import pulumi_aws as aws

from components.settings import SettingsError, declared, load_settings
from components.site import Site, SiteArgs

config = pulumi.Config()
region = pulumi.Config("aws").require("region")
zones = aws.get_availability_zones(state="available").names
try:
    settings = load_settings({key: config.get(key) for key in declared()}, stack=pulumi.get_stack(), zones=zones)
except SettingsError as err:
    # RunError ends the program with this one message and no traceback; nothing was registered.
    raise pulumi.RunError(str(err)) from None

site = Site("foobar", SiteArgs(settings=settings, region=region))
for key, value in site.outputs.items():
    pulumi.export(key, value)
