"""A wall this host cannot build, as the worker's configuration settles it."""


def test_a_wall_this_host_cannot_build_stops_the_worker_in_one_line_unless_optional(monkeypatch):
    from sieci.jobs import cgroups
    from sieci.config import settle_isolation
    from sieci.worker.isolation import Isolation

    def unusable():
        raise cgroups.Unusable("no cgroup tree here")

    monkeypatch.setattr(cgroups, "discover", unusable)
    options = {"isolation": Isolation(namespaces=False), "python": None, "job_user": None}
    problem = settle_isolation(options)
    assert problem.startswith("cannot give jobs cgroups of their own (no cgroup tree here)") and "\n" not in problem
    assert "--job-cgroups off" in problem
    assert settle_isolation(options, optional=["cgroups"]) is None and not options["isolation"].cgroups
