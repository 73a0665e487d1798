# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Ansible side every module over libvirt_client shares (live_migrate,
placement_facts, migration_progress): the ``uri`` option, the check that the binding is
installed, and one way libvirt's errors become the module's failure."""

import contextlib

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_client


def libvirt_module(argument_spec, **kwargs):
    """An AnsibleModule (check mode supported) over ``argument_spec`` plus the libvirt ``uri``
    option (argument_spec may redefine it, e.g. with aliases); it has failed already when
    python3-libvirt is missing. kwargs go to AnsibleModule (mutually_exclusive, ...)."""
    spec = dict(libvirt_client.LIBVIRT_ARGUMENT_SPEC)
    spec.update(argument_spec)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
    if libvirt_client.LIBVIRT_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("libvirt-python (python3-libvirt)"),
                         exception=str(libvirt_client.LIBVIRT_IMPORT_ERROR))
    libvirt_client.quiet_libvirt()
    return module


@contextlib.contextmanager
def libvirt_errors(module, *own_errors):
    """Fail the module with the message of a LibvirtClientError (which names the call and
    the URI), a raw libvirtError, or one of ``own_errors`` (the module's own exceptions
    whose text is the message) raised in the block."""
    try:
        yield
    except (libvirt_client.LibvirtClientError,) + tuple(own_errors) as exc:
        module.fail_json(msg=str(exc))
    except libvirt_client.libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt error: %s" % exc)
