"""The carbon API down from the start: the gateway serves on the configured default and says so."""

from gateway.testing.processes import free_port
from tests.support.data import IMAGES


async def test_gateway_serves_with_the_carbon_api_down(make_gateway):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    async with make_gateway(carbon__source="uk", carbon__uk__base_url=dead, carbon__http__attempts=1,
                            carbon__default_intensity=300.0, carbon__c_low=100.0, carbon__c_high=300.0) as client:
        response = await client.post("/v1/classify", content=IMAGES[0].read_bytes(),
                                     headers={"content-type": "image/jpeg"})
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200
    carbon = response.json()["carbon"]
    assert (carbon["intensity"], carbon["status"], carbon["source_up"]) == (300.0, "default", False)
    assert carbon["last_error"]
    assert response.json()["model"]["name"] == "resnet18"  # the default is dirty: the small model
    assert ready.json()["carbon"]["status"] == "default"
    assert 'carbon_gateway_carbon_source_up{source="uk"} 0.0' in metrics
    assert 'carbon_gateway_carbon_status{status="default"} 1.0' in metrics
