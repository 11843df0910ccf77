"""One endpoint at a fixed rate, for bench/load.py: every user sends one request per second whatever the
latency (until a response takes over a second), so `users` = requests per second, and the rate is set by
the schedule, not by how fast the server answers."""

import os

from locust import FastHttpUser, constant_throughput, task

PATH = os.environ["DIGGAN_LOAD_PATH"]
NAME = os.environ.get("DIGGAN_LOAD_NAME", PATH)
HEADERS = {"Authorization": f"Bearer {os.environ['DIGGAN_LOAD_KEY']}"} if os.environ.get("DIGGAN_LOAD_KEY") else {}


class Client(FastHttpUser):
    wait_time = constant_throughput(1.0)

    @task
    def hit(self) -> None:
        self.client.get(PATH, name=NAME, headers=HEADERS)
