"""CommunitySettlement with 1,000 members: the same 1,000 readings (seeded random) delivered to
two sharing-mode slots (MMR), one settled in a single pass per phase (one settle call for the
tally, one for the payments), the other in chunks of 97 readings. Every member's MembersSettled
values and balance changes are the same in both, equal to settlement/pricing.py's
``slot_amounts``; each slot is budget-balanced and the market stays solvent.

The 1,000 members are plain addresses from fixed keys, with no deposit: what they owe becomes
debt, which the supplier stands behind (its deposit pays the exporters). Registrations (a member
and a meter key each) are sent as JSON-RPC batches of ``eth_sendTransaction`` from ten unlocked
dev accounts given MANAGER_ROLE; views are read as batches of ``eth_call``; readings go in
``submitReadings`` batches of 100. The single pass's gas per member is printed (``-s`` shows
it), not asserted. Every transaction is awaited by its receipt (conftest's ``send_awaited``).
"""

import random
import time

from conftest import MMR, SETTLED, SHARING, fixed_meter_key, send_awaited, settlement_config
from eth_account import Account
from eth_utils import keccak

from oracle.readings import Reading, pack
from settlement.chunks import SlotReading, backward_chunks
from settlement.pricing import slot_amounts

PI, PE = 250_000, 60_000
MEMBERS = 1_000
CHUNK = 97
READINGS_PER_BATCH = 100
SEED = 1_000
SUPPLIER_TOP_UP = 10_000_000_000  # 10,000 tokens: it pays the exporters and covers the debts


def send_batches(web3, senders, to, datas, gas=250_000):
    """Sends ``datas`` as transactions to ``to`` from unlocked dev accounts, as JSON-RPC batches
    of one transaction per sender (anvil takes a batch's requests concurrently: a sender's
    transactions go in separate batches, each after the one with the nonce before); checks
    that every one succeeded."""
    nonces = [web3.eth.get_transaction_count(str(sender)) for sender in senders]
    hashes = []
    for start in range(0, len(datas), len(senders)):
        requests = []
        for index, data in enumerate(datas[start : start + len(senders)]):
            transaction = {"from": str(senders[index]), "to": str(to), "data": data, "gas": hex(gas)}
            requests.append(("eth_sendTransaction", [transaction | {"nonce": hex(nonces[index])}]))
            nonces[index] += 1
        responses = web3.provider.make_batch_request(requests)
        assert all("error" not in response for response in responses), responses[:3]
        hashes += [response["result"] for response in responses]
    pending = hashes
    while pending:
        receipts = web3.provider.make_batch_request([("eth_getTransactionReceipt", [h]) for h in pending])
        assert all(r["result"] is None or int(r["result"]["status"], 16) == 1 for r in receipts), "a call failed"
        pending = [h for h, r in zip(pending, receipts) if r["result"] is None]
        if pending:
            time.sleep(0.05)


def read_many(web3, calls, plain):
    """View calls ``[(contract_method, args), ...]`` as JSON-RPC batches at the latest block."""
    results = []
    for start in range(0, len(calls), 500):
        part = calls[start : start + 500]
        requests = [("eth_call", [{"to": fn._address, "data": fn.encode_input(*args)}, "latest"]) for fn, args in part]
        responses = web3.provider.make_batch_request(requests)
        results += [plain(fn.decode_output(response["result"])) for (fn, _), response in zip(part, responses)]
    return results


def member_flows(count, seed):
    """Seeded random (import_wh, export_wh): mostly consumers and producers, some both, some idle."""
    rng = random.Random(seed)
    flows = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.45:
            flows.append((rng.randint(1, 4_000), rng.randint(0, 300)))
        elif kind < 0.9:
            flows.append((rng.randint(0, 300), rng.randint(1, 4_000)))
        else:
            flows.append((0, 0))
    return flows


def test_a_thousand_members(community, admin, accounts, web3, member_results, plain):
    started = time.monotonic()
    market, settlement, oracle, token = community.market, community.settlement, community.oracle, community.token
    registrars = list(accounts[10:20])  # dev accounts no fixture uses, as managers
    for registrar in registrars:
        send_awaited(market.grantRole, (market.MANAGER_ROLE(), registrar), admin)
    addresses = [Account.from_key(keccak(text=f"Peerwatt scale member {i}")).address for i in range(MEMBERS)]
    keys = [fixed_meter_key(f"scale {i}") for i in range(MEMBERS)]
    send_batches(web3, registrars, market, [market.addMember.encode_input(a) for a in addresses])
    meters = [oracle.registerMeter.encode_input(key.address, address, 0) for key, address in zip(keys, addresses)]
    send_batches(web3, registrars, oracle, meters)
    ids = [member_id for member_id, active in read_many(web3, [(market.memberOf, (a,)) for a in addresses], plain)]
    assert sorted(ids) == list(range(5, 5 + MEMBERS))  # (a batch is taken in any order)
    assert market.memberCount() == 4 + MEMBERS
    send_awaited(token.mint, (community.supplier, SUPPLIER_TOP_UP), admin)
    send_awaited(market.deposit, (SUPPLIER_TOP_UP,), community.supplier)

    single = market.nextOpenSlot()
    chunked = single + 1
    send_awaited(settlement.setConfig, (settlement_config(SHARING, MMR), single), admin)
    flows = member_flows(MEMBERS, SEED)
    slot_readings = [SlotReading(member_id, *flow) for member_id, flow in zip(ids, flows)]
    for number, slot in enumerate((single, chunked), start=1):
        community.end_slot(slot)
        # consecutive slots: each register grows by exactly the slot's flow
        readings = [Reading(k.address, slot, i, e, number * i, number * e) for k, (i, e) in zip(keys, flows)]
        signed = [community.domain.sign(reading, key.key) for reading, key in zip(readings, keys)]
        for start in range(0, MEMBERS, READINGS_PER_BATCH):
            batch = pack(signed[start : start + READINGS_PER_BATCH])
            send_awaited(oracle.submitReadings, (batch,), community.relayer)
            assert oracle.slotCommitment(slot)[1] == start + READINGS_PER_BATCH  # every reading accepted
    community.past_deadline(chunked)
    setup_seconds = time.monotonic() - started

    others = [*community.members, community.supplier, community.dso, community.fee_manager, settlement]

    def state():
        calls = [(market.balanceOf, (a,)) for a in addresses] + [(market.debtOf, (a,)) for a in addresses]
        calls += [(market.balanceOf, (a,)) for a in others]
        values = read_many(web3, calls, plain)
        return values[:MEMBERS], values[MEMBERS : 2 * MEMBERS], values[2 * MEMBERS :]

    # the reference: every member's amount (acceptance order is address order here)
    amounts, supplier_residual = slot_amounts("mmr", flows, PI, PE)
    results = {}
    for slot, size in ((single, MEMBERS), (chunked, CHUNK)):
        balances, debts, rest = state()
        txs = []
        for _ in range(2):  # sharing: the tally, then the payments
            for chunk in backward_chunks(slot, slot_readings, size):
                args = (slot, chunk.from_chain_bytes, chunk.data)
                txs.append(send_awaited(settlement.settle, args, community.relayer))
        assert settlement.slotState(slot)[0] == SETTLED
        after_balances, after_debts, after_rest = state()
        settled = {args[1]: args[2:] for tx in txs for args in member_results(tx)}
        assert len(settled) == MEMBERS
        # what each member got or owes now: a charge beyond its balance (0 here) is its debt
        changes = [(b1 - b0) - (d1 - d0) for b0, b1, d0, d1 in zip(balances, after_balances, debts, after_debts)]
        rest_changes = [b - a for a, b in zip(rest, after_rest)]
        new_debts = sum(after_debts) - sum(debts)
        # budget balance: every token moved between accounts, and the supplier (who stands behind
        # the debts) took exactly the community's exchange with it, rounding included
        assert sum(b1 - b0 for b0, b1 in zip(balances, after_balances)) + sum(rest_changes) == 0
        assert rest_changes[:4] == [0, 0, 0, 0] and rest_changes[5:] == [0, 0, 0]
        assert rest_changes[4] + new_debts == supplier_residual
        assert changes == amounts
        assert [settled[a] for a in addresses] == [(0, amount, 0, 0, 0) for amount in amounts]
        held = token.balanceOf(market)
        assert held == sum(after_balances) + sum(after_rest)  # solvent
        results[slot] = (settled, changes, rest_changes, new_debts, txs)

    assert results[single][:4] == results[chunked][:4]
    single_txs, chunked_txs = results[single][4], results[chunked][4]
    assert len(single_txs) == 2 and len(chunked_txs) == 2 * -(-MEMBERS // CHUNK)
    single_gas = sum(tx.gas_used for tx in single_txs)
    chunked_gas = sum(tx.gas_used for tx in chunked_txs)
    print(
        f"\n{MEMBERS} members, sharing (MMR): single pass {single_gas} gas "
        f"(tally {single_txs[0].gas_used}, payments {single_txs[1].gas_used}) = {single_gas / MEMBERS:.0f} gas "
        f"per member; chunks of {CHUNK}: {chunked_gas} gas in {len(chunked_txs)} calls = "
        f"{chunked_gas / MEMBERS:.0f} per member; setup {setup_seconds:.0f} s"
    )
