# Lets `flask numbers ...`, `flask operators ...` find the app without --app.
FLASK_APP=webapp
