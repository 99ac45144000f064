"""Client quotas in a cluster of three: an AlterClientQuotas sent to any broker is written by the
controller into the cluster metadata and every broker describes (and enforces) it without a
restart; quotas survive a change of controller. Requests through kafka-python's own codecs."""
from kafka.protocol.admin.client_quotas import AlterClientQuotasRequest as AlterQ
from kafka.protocol.admin.client_quotas import DescribeClientQuotasRequest as DescribeQ

from conftest import wait_for
from load import unique_name


def alter(admin, node, client_id, value):
    """Sets (value None: removes) producer_byte_rate of /clients/<client_id>, sent to `node`."""
    request = AlterQ(entries=[AlterQ.EntryData(
        entity=[AlterQ.EntryData.EntityData(entity_type="client-id", entity_name=client_id)],
        ops=[AlterQ.EntryData.OpData(key="producer_byte_rate", value=float(value or 0), remove=value is None)])])
    response = admin._manager.run(admin._manager.send, request, node)
    return [(e.error_code, e.error_message) for e in response.entries]


def described(admin, node, client_id):
    """producer_byte_rate of /clients/<client_id> as `node` describes it (None: no quota)."""
    request = DescribeQ(components=[DescribeQ.ComponentData(entity_type="client-id", match_type=0, match=client_id)], strict=True)
    response = admin._manager.run(admin._manager.send, request, node)
    assert response.error_code == 0, f"broker {node} answered DescribeClientQuotas with {response.error_code} {response.error_message}"
    for entry in response.entries or []:
        for v in entry.values:
            if v.key == "producer_byte_rate":
                return v.value
    return None


def test_quotas_reach_every_broker_and_survive_a_new_controller(cluster):
    client_id = unique_name("quota")
    admin = cluster.admin()
    try:
        controller = cluster.controller()
        other = next(n for n in cluster.brokers if n != controller)
        # Sent to a broker that is not the controller: forwarded there.
        assert alter(admin, other, client_id, 1048576) == [(0, None)]
        seen = {}

        def everywhere(value):
            def check():
                for n in cluster.live():
                    seen[n] = described(admin, n, client_id)
                return all(seen[n] == value for n in cluster.live())
            return check
        wait_for(everywhere(1048576.0), 10, lambda: f"every broker to describe the quota; seen {seen}")
    finally:
        admin.close()

    # The controller stops: the next one has the quota and changes it.
    cluster.stop(controller)
    wait_for(lambda: cluster.controller_seen_by_all() not in (None, controller), 30, "a new controller")
    admin = cluster.admin()
    try:
        wait_for(everywhere(1048576.0), 10, lambda: f"the remaining brokers to describe the quota; seen {seen}")
        survivor = cluster.live()[0]
        assert alter(admin, survivor, client_id, 2097152) == [(0, None)]
        wait_for(everywhere(2097152.0), 10, lambda: f"every broker to describe the new quota; seen {seen}")
        assert alter(admin, survivor, client_id, None) == [(0, None)]
        wait_for(everywhere(None), 10, lambda: f"every broker to drop the removed quota; seen {seen}")
    finally:
        admin.close()
