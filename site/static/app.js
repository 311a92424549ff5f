// Shows whether the application tier answers; the page itself is static.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  if (!status) return;
  fetch(status.dataset.endpoint, { headers: { Accept: "application/json" } })
    .then((r) => {
      status.textContent = r.ok ? "The service is up." : "The service is not available right now.";
      status.className = r.ok ? "ok" : "down";
    })
    .catch(() => {
      status.textContent = "The service is not available right now.";
      status.className = "down";
    });
});
