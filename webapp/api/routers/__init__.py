"""The API's endpoints, one router per resource. Each looks objects up through the web app's
selectors (so a user sees exactly what the pages show them) and writes through its services."""
